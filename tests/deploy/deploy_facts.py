"""Shared facts and loaders for the deployment checks (tests/deploy/test_deploy_*.py).

Each test module loads this file by path (its _load_facts()), because the suite runs with
--import-mode=importlib, where a sibling module cannot be imported by name.

The lists below are the ones fixed for the product (services, ports, topics, metric names and
their labels). The manifests, the alert rules and the dashboard are checked against them, so a
rename on either side fails here instead of silently breaking a panel or an alert.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

SERVICES: dict[str, int] = {"gateway": 8000, "scoring": 8001, "evidence": 8002, "recommendation": 8003}

BASE_TOPICS = (
    "rnpc.ehr.inbound.v1",
    "rnpc.recurrence.recorded.v1",
    "rnpc.scores.computed.v1",
    "rnpc.evidence.matched.v1",
    "rnpc.recommendation.issued.v1",
)
TOPICS: frozenset[str] = frozenset(BASE_TOPICS) | {f"{t}.dlq" for t in BASE_TOPICS}
RETENTION_MS = 7 * 24 * 3600 * 1000
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Metric:
    kind: str  # counter | gauge | histogram
    labels: frozenset[str]


def _m(kind: str, *labels: str) -> Metric:
    return Metric(kind, frozenset(("service", *labels)))


METRICS: dict[str, Metric] = {
    "rnpc_http_requests_total": _m("counter", "method", "route", "status"),
    "rnpc_http_request_duration_seconds": _m("histogram", "method", "route"),
    "rnpc_http_requests_in_progress": _m("gauge", "method", "route"),
    "rnpc_events_consumed_total": _m("counter", "topic", "outcome"),
    "rnpc_event_processing_seconds": _m("histogram", "topic"),
    "rnpc_consumer_lag": _m("gauge", "topic", "partition"),
    "rnpc_consumer_last_poll_timestamp_seconds": _m("gauge"),
    "rnpc_consumer_commit_failures_total": _m("counter"),
    "rnpc_consumer_rebalances_total": _m("counter"),
    "rnpc_dlq_messages_total": _m("counter", "topic"),
    "rnpc_outbox_pending": _m("gauge"),
    "rnpc_outbox_oldest_pending_age_seconds": _m("gauge"),
    "rnpc_outbox_published_total": _m("counter", "status"),
    "rnpc_outbox_parked_total": _m("counter", "reason"),
    "rnpc_table_rows": _m("gauge", "table"),
    "rnpc_table_bytes": _m("gauge", "table"),
    "rnpc_retention_deleted_total": _m("counter", "table"),
    "rnpc_provenance_rejected_total": _m("counter", "topic"),
    "rnpc_background_errors_total": _m("counter", "job"),
    # gateway only
    "rnpc_end_to_end_latency_seconds": _m("histogram"),
    "rnpc_recurrences_accepted_total": _m("counter", "outcome"),
    "rnpc_redrive_total": _m("counter"),
}

# Allowed label values where the set is closed.
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("rnpc_events_consumed_total", "outcome"): frozenset({"success", "duplicate", "retry", "dlq"}),
    ("rnpc_outbox_published_total", "status"): frozenset({"ok", "error"}),
    ("rnpc_outbox_parked_total", "reason"): frozenset({"too_large", "failing"}),
    ("rnpc_background_errors_total", "job"): frozenset({"redrive", "outbox-relay", "outbox-housekeeping"}),
    ("rnpc_provenance_rejected_total", "topic"): TOPICS,
    ("rnpc_recurrences_accepted_total", "outcome"): frozenset({"new", "duplicate", "superseding"}),
    ("rnpc_consumer_lag", "topic"): TOPICS,
    ("rnpc_events_consumed_total", "topic"): TOPICS,
    ("rnpc_event_processing_seconds", "topic"): TOPICS,
    ("rnpc_dlq_messages_total", "topic"): TOPICS,
}

# Labels Prometheus itself or the scrape adds (target labels), and histogram bucket bounds.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint"})


def load_yaml_docs(path: Path) -> list[Any]:
    """All non-empty YAML documents of a file."""
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]


@cache
def k8s_manifests() -> tuple[Manifest, ...]:
    out: list[Manifest] = []
    for rel in kustomization()["resources"]:
        path = K8S / rel
        out.extend(Manifest(path, doc) for doc in load_yaml_docs(path))
    return tuple(out)


def by_kind(manifests: tuple[Manifest, ...], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for m in manifests:
        if m.kind == kind:
            assert m.name not in found, f"two {kind} objects named {m.name}"
            found[m.name] = m.doc
    return found


# --------------------------------------------------------------------------- PromQL helpers

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"\b(rnpc_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def metric_base_name(token: str) -> str | None:
    """The listed metric a series name belongs to (histograms add _bucket/_sum/_count)."""
    if token in METRICS:
        return token
    for suffix in ("_bucket", "_sum", "_count"):
        if token.endswith(suffix):
            base = token[: -len(suffix)]
            if METRICS.get(base, Metric("", frozenset())).kind == "histogram":
                return base
    return None


def rnpc_series_names(expr: str) -> set[str]:
    """Every rnpc_* identifier in an expression (string literals excluded)."""
    bare = _STRINGS.sub('""', expr)
    return {tok for tok in _IDENT.findall(bare) if tok.startswith("rnpc_")}


def promql_problems(expr: str) -> list[str]:
    """Names, labels and label values in an expression that are not in the agreed lists."""
    problems: list[str] = []
    names = rnpc_series_names(expr)
    bases: set[str] = set()
    for name in sorted(names):
        base = metric_base_name(name)
        if base is None:
            problems.append(f"unknown metric {name!r}")
        else:
            bases.add(base)
    for series, body in _SELECTOR.findall(expr):
        base = metric_base_name(series)
        if base is None:
            continue
        allowed = METRICS[base].labels | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())
        for label, _op, value in _MATCHER.findall(body):
            if label not in allowed:
                problems.append(f"{series}: unknown label {label!r}")
            closed = LABEL_VALUES.get((base, label))
            if closed is not None and _op == "=" and value not in closed and "$" not in value:
                problems.append(f"{series}: {label}={value!r} is not one of {sorted(closed)}")
    if bases:
        known = set().union(*(METRICS[b].labels for b in bases)) | TARGET_LABELS | {"le"}
        for group in _GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",")):
                if label and label not in known:
                    problems.append(f"grouping by unknown label {label!r}")
    return problems


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows included."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            out.append((f"variable {var['name']}", query))
    return out


def alert_rules(groups_doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in groups_doc["groups"] for rule in group["rules"]]


# --------------------------------------------------------------------------- tools

def tool(name: str) -> str | None:
    return shutil.which(name)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)
