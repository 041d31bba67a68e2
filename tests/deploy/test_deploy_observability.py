"""Prometheus configuration, alert rules and the Grafana dashboard.

promtool (Debian package `prometheus`) runs when installed; deploy/validate.sh installs it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
import deploy_facts as F  # on sys.path via tests/deploy/conftest.py

PROM = F.DEPLOY / "prometheus"
GRAFANA = F.DEPLOY / "grafana"
# Needs promtool: run by deploy/validate.sh, which installs it (RNPC_DEPLOY_TOOLS=1).
needs_promtool = pytest.mark.deploy_tools


def _alerts() -> dict[str, Any]:
    return yaml.safe_load((PROM / "alerts.yml").read_text())


def _dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "rnpc.json").read_text())


# --------------------------------------------------------------------------- alert rules

REQUIRED_ALERTS = {
    "RnpcDeadLetters": "rnpc_dlq_messages_total",
    "RnpcConsumerLagHigh": "rnpc_consumer_lag",
    "RnpcConsumerStalled": "rnpc_consumer_last_poll_timestamp_seconds",
    "RnpcOutboxBacklogOld": "rnpc_outbox_oldest_pending_age_seconds",
    "RnpcHigh5xxRatio": "rnpc_http_requests_total",
    "RnpcEndToEndLatencyHigh": "rnpc_end_to_end_latency_seconds_bucket",
    "RnpcServiceDown": "up",
}


def test_required_alerts_exist_with_severity_and_runbook() -> None:
    rules = {r["alert"]: r for r in F.alert_rules(_alerts())}
    assert len(rules) == len(F.alert_rules(_alerts())), "duplicate alert names"
    for alert, metric in REQUIRED_ALERTS.items():
        assert alert in rules, alert
        assert metric in rules[alert]["expr"], alert
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), name


def test_alert_thresholds_are_the_agreed_ones() -> None:
    rules = {r["alert"]: r for r in F.alert_rules(_alerts())}
    assert "[5m]" in rules["RnpcDeadLetters"]["expr"] and "> 0" in rules["RnpcDeadLetters"]["expr"]
    assert re.search(r"\)\s*> 60\b", rules["RnpcConsumerStalled"]["expr"])
    assert re.search(r"> 120\b", rules["RnpcOutboxBacklogOld"]["expr"])
    assert "histogram_quantile(0.95" in rules["RnpcEndToEndLatencyHigh"]["expr"]
    assert re.search(r"> 30\b", rules["RnpcEndToEndLatencyHigh"]["expr"])
    assert 'status=~"5.."' in rules["RnpcHigh5xxRatio"]["expr"]


def test_runbook_anchors_exist_in_the_deploy_readme() -> None:
    readme = (F.DEPLOY / "README.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    for rule in F.alert_rules(_alerts()):
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "deploy/README.md" and anchor in headings, rule["alert"]


def test_prometheusrule_manifest_matches_alerts_yml() -> None:
    rule = F.by_kind(F.k8s_manifests(), "PrometheusRule")["rnpc-alerts"]
    assert rule["spec"]["groups"] == _alerts()["groups"], (
        "regenerate: python deploy/tools/render_prometheusrule.py"
    )
    result = F.run([sys.executable, "deploy/tools/render_prometheusrule.py", "--check"])
    assert result.returncode == 0, result.stderr


@needs_promtool
def test_promtool_accepts_rules_config_and_rule_unit_tests() -> None:
    for cmd in (
        ["promtool", "check", "rules", "deploy/prometheus/alerts.yml"],
        ["promtool", "check", "config", "deploy/prometheus/prometheus.yml"],
        ["promtool", "test", "rules", "deploy/prometheus/alerts.test.yml"],
    ):
        result = F.run(cmd)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"


def test_every_alert_has_a_promtool_unit_test() -> None:
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert {r["alert"] for r in F.alert_rules(_alerts())} - tested == set()


# --------------------------------------------------------------------------- prometheus.yml

def test_prometheus_scrapes_every_service_as_its_own_job() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert "alerts.yml" in config["rule_files"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for svc, port in F.SERVICES.items():
        job = jobs[f"rnpc-{svc}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == [f"{svc}:{port}"]
        for sc in job["static_configs"]:
            assert "service" not in sc.get("labels", {}), "would clash with the metrics' own label"


# --------------------------------------------------------------------------- Grafana

def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["title"]
    ids: list[int] = []
    for panel in dash["panels"]:
        ids.append(panel["id"])
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "service"} <= variables


def test_dashboard_covers_red_consumers_dlq_outbox_and_end_to_end() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    for words in ("request rate", "error", "duration", "consumed by outcome", "lag",
                  "dead-letter", "outbox", "recommendation issued"):
        assert words in titles, words


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool has no 'check expression': wrap each query in a recording rule and check those."""
    exprs = [e for title, e in F.dashboard_exprs(_dashboard()) if not title.startswith("variable ")]
    rules = []
    for i, expr in enumerate(exprs):
        concrete = (expr.replace("$__rate_interval", "5m").replace("$service", ".*"))
        assert "$" not in concrete, expr
        rules.append({"record": f"rnpc:dashboard_query:{i}", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = F.run(["promtool", "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_compose_mounts() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "rnpc.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((F.ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
