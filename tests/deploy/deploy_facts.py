"""Shared facts and loaders for the deployment checks (tests/deploy/test_deploy_*.py).

Each test module loads this file by path (its _load_facts()), because the suite runs with
--import-mode=importlib, where a sibling module cannot be imported by name.

The lists below are the ones fixed for the product (services, ports, topics); the metric names
and labels and each service's use of Kafka are read from the code. The manifests, the alert
rules and the dashboard are checked against them, so a rename on either side fails here
instead of silently breaking a panel, an alert or a service's ACLs.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import yaml
from fastapi import FastAPI
from prometheus_client.metrics import MetricWrapperBase

from rnpc_gateway.service import Acceptance
from rnpc_shared.contracts.events import dlq_topic
from rnpc_shared.kafka.consumer import DeadLetterRoute, Outcome, Route
from rnpc_shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

SERVICES: dict[str, int] = {"gateway": 8000, "scoring": 8001, "evidence": 8002, "recommendation": 8003}

BASE_TOPICS = (
    "rnpc.ehr.inbound.v1",
    "rnpc.recurrence.recorded.v1",
    "rnpc.scores.computed.v1",
    "rnpc.evidence.matched.v2",
    "rnpc.recommendation.issued.v1",
    "rnpc.evidence.base.v1",
)
COMPACTED_TOPICS = frozenset({"rnpc.evidence.base.v1"})  # the latest per key, kept for good
TOPICS: frozenset[str] = frozenset(BASE_TOPICS) | {f"{t}.dlq" for t in BASE_TOPICS}
RETENTION_MS = 7 * 24 * 3600 * 1000
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Metric:
    kind: str  # counter | gauge | histogram | summary
    labels: frozenset[str]


def _service_app_modules() -> list[ModuleType]:
    """Each service's app module: importing it imports every module the service runs."""
    return [importlib.import_module(f"rnpc_{svc}.app") for svc in SERVICES]


def _code_metrics() -> dict[str, Metric]:
    """Every rnpc_* metric the code defines, by its exposed name, with its label names.

    Taken from the prometheus_client collectors of the rnpc modules the services import (the
    shared ones are in rnpc_shared.metrics), so the alert rules and the dashboard are checked
    against metrics that really exist.
    """
    _service_app_modules()
    found: dict[str, Metric] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("rnpc_") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and value._name.startswith("rnpc_"):
                # prometheus_client keeps a counter's name without _total and exposes it with it
                name = value._name + "_total" if value._type == "counter" else value._name
                found[name] = Metric(value._type, frozenset(value._labelnames))
    return found


METRICS: dict[str, Metric] = _code_metrics()

# Allowed label values where the set is closed (from the enums the code labels with).
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("rnpc_events_consumed_total", "outcome"): frozenset(o.value for o in Outcome),
    ("rnpc_outbox_published_total", "status"): frozenset({"ok", "error"}),
    ("rnpc_recurrences_accepted_total", "outcome"): frozenset(a.value for a in Acceptance),
    ("rnpc_outbox_parked_total", "reason"): frozenset({"too_large", "failing"}),
    ("rnpc_background_errors_total", "job"): frozenset({"redrive", "fhir-pending-retry", "outbox-relay", "outbox-housekeeping"}),
    ("rnpc_provenance_rejected_total", "topic"): TOPICS,
    ("rnpc_consumer_lag", "topic"): TOPICS,
    ("rnpc_events_consumed_total", "topic"): TOPICS,
    ("rnpc_event_processing_seconds", "topic"): TOPICS,
    ("rnpc_dlq_messages_total", "topic"): TOPICS,
}

# --------------------------------------------------------------------------- Kafka use, from the code

@dataclass(frozen=True)
class KafkaUse:
    """What one service does on Kafka, as its code says."""

    settings: ServiceSettings
    produces: frozenset[str]  # topics its outbox publishes
    handles: frozenset[str]  # topics it consumes with a Route (failures go to <topic>.dlq)
    observes: frozenset[str]  # .dlq topics it consumes with a DeadLetterRoute (no DLQ of a DLQ)

    @property
    def group(self) -> str:
        return self.settings.group_id

    @property
    def env_prefix(self) -> str:
        return str(self.settings.model_config.get("env_prefix", ""))

    @property
    def reads(self) -> frozenset[str]:
        return self.handles | self.observes

    @property
    def writes(self) -> frozenset[str]:
        # EventConsumer._dead_letter sends a message that failed on <topic> to dlq_topic(<topic>);
        # OutboxRelay._announce_parked sends a parked row's notice to dlq_topic(<its topic>).
        return self.produces | {dlq_topic(topic) for topic in self.handles | self.produces}


def _create_app_arguments(app_module: ModuleType) -> dict[str, Any]:
    """The arguments a service's create_app() passes to create_service_app (nothing is started)."""
    captured: dict[str, Any] = {}

    def capture(**kwargs: Any) -> FastAPI:
        captured.update(kwargs)
        return FastAPI()

    with mock.patch.object(app_module, "create_service_app", capture):
        app_module.create_app()
    return captured


def _topic_arguments(node: ast.Call) -> list[ast.expr]:
    """The topic argument(s) of a call: any `topic=` keyword (the outbox's emit) and the second
    positional argument of `add_to_outbox(session, topic, event)`."""
    found = [keyword.value for keyword in node.keywords if keyword.arg == "topic"]
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
    if name == "add_to_outbox" and len(node.args) >= 2:
        found.append(node.args[1])
    return found


def _produced_topics(svc: str) -> frozenset[str]:
    """Every topic the service's sources put in the outbox, resolved to its value."""
    topics: set[str] = set()
    src = ROOT / "services" / svc / "src"
    for path in sorted(src.rglob("*.py")):
        module = None
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for argument in _topic_arguments(node):
                if module is None:
                    module = importlib.import_module(".".join(path.relative_to(src).with_suffix("").parts))
                value = getattr(module, argument.id, None) if isinstance(argument, ast.Name) else None
                assert isinstance(value, str), f"{path}:{node.lineno}: cannot tell which topic is produced"
                topics.add(value)
    return frozenset(topics)


@cache
def kafka_use() -> dict[str, KafkaUse]:
    out: dict[str, KafkaUse] = {}
    for svc, app_module in zip(SERVICES, _service_app_modules(), strict=True):
        args = _create_app_arguments(app_module)
        routes = {t: type(r) for t, r in (args.get("routes") or {}).items()}
        out[svc] = KafkaUse(
            settings=args["settings"],
            produces=_produced_topics(svc),
            handles=frozenset(t for t, kind in routes.items() if kind is Route),
            observes=frozenset(t for t, kind in routes.items() if kind is DeadLetterRoute),
        )
    return out


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


# --------------------------------------------------------------------------- settings as deployed

SECRET_PLACEHOLDER = "value-from-a-secret"


def k8s_env(svc: str) -> dict[str, str]:
    """The environment of the service container as Kubernetes sets it: its ConfigMap, then the
    Deployment's `env` (a required Secret key stands in as a placeholder; optional ones unset)."""
    manifests = k8s_manifests()
    pod = by_kind(manifests, "Deployment")[svc]["spec"]["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == svc)
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        assert "configMapRef" in source, f"{svc}: envFrom only from ConfigMaps (secrets by key)"
        env.update(by_kind(manifests, "ConfigMap")[source["configMapRef"]["name"]]["data"])
    for item in main.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif not item["valueFrom"].get("secretKeyRef", {}).get("optional", False):
            env[item["name"]] = SECRET_PLACEHOLDER
    return env


def settings_from(svc: str, env: dict[str, str]) -> ServiceSettings:
    """The service's own settings class, read from exactly this environment (nothing else)."""
    cls = type(kafka_use()[svc].settings)
    with mock.patch.dict(os.environ, env, clear=True):
        return cls()


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
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                          ("_count", {"histogram", "summary"})):
        if token.endswith(suffix):
            base = token[: -len(suffix)]
            if METRICS.get(base, Metric("", frozenset())).kind in kinds:
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
