"""Every Kubernetes object and docker-compose.yml against the real schemas (deploy/schemas).

Core objects: kubernetes-validate, strict. Custom resources: the openAPIV3Schema of the version
the vendored CRD serves (Strimzi 1.2.0, CloudNativePG 1.30.0, Prometheus Operator 0.93.0), strict.
docker-compose.yml: the compose-spec JSON schema. The checker is deploy/tools/check_schemas.py,
which deploy/validate.sh also runs on the output of `kubectl kustomize`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
import deploy_facts as F  # on sys.path via tests/deploy/conftest.py


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_schemas", F.DEPLOY / "tools" / "check_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


C = _load_checker()

# Strimzi 1.2 supports Kafka 4.2.0 to 4.3.1 (its release notes; deploy/schemas/README.md).
STRIMZI_KAFKA_VERSIONS = ("4.2.0", "4.3.1")

SERVED = {
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("kafka.strimzi.io/v1", "KafkaUser"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Database"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --------------------------------------------------------------------------- the schemas

def test_vendored_crds_are_the_pinned_releases() -> None:
    assert set(C.crd_schemas()) == SERVED, "only kafka.strimzi.io/v1 is served since Strimzi 1.0"
    folders = {p.name for p in (F.DEPLOY / "schemas" / "crds").iterdir()}
    assert folders == {"strimzi-1.2.0", "cnpg-v1.30.0", "prometheus-operator-v0.93.0"}
    for path in (F.DEPLOY / "schemas" / "crds" / "prometheus-operator-v0.93.0").glob("*.yaml"):
        (crd,) = F.load_yaml_docs(path)
        assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.93.0", path
    readme = (F.DEPLOY / "schemas" / "README.md").read_text()
    assert readme.count("Apache-2.0") >= 4, "keep the licence note of each vendored schema"


# --------------------------------------------------------------------------- the objects

@pytest.mark.parametrize("manifest", F.k8s_manifests(), ids=lambda m: f"{m.kind}/{m.name}")
def test_object_matches_its_schema(manifest: F.Manifest) -> None:
    assert C.object_problems(manifest.doc) == []


def test_every_custom_resource_uses_a_served_version() -> None:
    kinds = {kind for _, kind in SERVED}
    used = {(m.doc["apiVersion"], m.kind) for m in F.k8s_manifests() if m.kind in kinds}
    assert used <= SERVED
    assert {kind for _, kind in used} == kinds, "each vendored CRD is used"


def test_compose_file_matches_the_compose_spec() -> None:
    assert C.compose_problems(yaml.safe_load((F.ROOT / "docker-compose.yml").read_text())) == []


def test_the_checker_rejects_what_the_api_server_would() -> None:
    """Unknown fields, wrong types and unserved versions are reported, core and custom alike."""
    objects = {(m.kind, m.name): m.doc for m in F.k8s_manifests()}

    def problems(kind: str, name: str, change: Any) -> list[str]:
        doc = copy.deepcopy(objects[(kind, name)])
        change(doc)
        return C.object_problems(doc)

    assert problems("Kafka", "rnpc-kafka", lambda d: d.update(apiVersion="kafka.strimzi.io/v1beta2"))
    assert problems("Kafka", "rnpc-kafka", lambda d: d["spec"]["kafka"].update(zookeeper={}))
    assert problems("KafkaUser", "rnpc-scoring",
                    lambda d: d["spec"]["authorization"]["acls"][0].update(operation="Write"))
    assert problems("Cluster", "rnpc-pg", lambda d: d["spec"].update(instances="three"))
    assert problems("ServiceMonitor", "gateway", lambda d: d["spec"]["endpoints"][0].update(pth="/m"))
    assert problems("Deployment", "gateway",
                    lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"))
    assert problems("Ingress", "gateway", lambda d: d.update(apiVersion="extensions/v1beta1"))
    compose = yaml.safe_load((F.ROOT / "docker-compose.yml").read_text())
    compose["services"]["kafka"]["restart_policy"] = "always"
    assert C.compose_problems(compose)


@pytest.mark.deploy_tools
def test_kustomize_output_matches_the_schemas() -> None:
    """What `kubectl apply -k` would send, not only the source files."""
    assert F.tool("kubectl"), "kubectl not installed"
    result = F.run(["kubectl", "kustomize", str(F.K8S)])
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == len(F.k8s_manifests())
    assert C.objects_problems(rendered) == []


# --------------------------------------------------------------------------- Kafka version

def _pom_kafka_versions() -> dict[str, str]:
    """kafka.version of every Maven project in the repository (the Apache Kafka CI leg's broker)."""
    found: dict[str, str] = {}
    poms = []
    for folder, subfolders, files in os.walk(F.ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "node_modules"]
        poms += [Path(folder) / "pom.xml"] if "pom.xml" in files else []
    for pom in poms:
        match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
        if match:
            found[pom.relative_to(F.ROOT).as_posix()] = match.group(1).strip()
    return found


def test_one_kafka_version_everywhere_and_strimzi_supports_it() -> None:
    (kafka,) = F.by_kind(F.k8s_manifests(), "Kafka").values()
    version = str(kafka["spec"]["kafka"]["version"])
    low, high = (_version_tuple(v) for v in STRIMZI_KAFKA_VERSIONS)
    assert low <= _version_tuple(version) <= high, f"Strimzi 1.2 runs Kafka {STRIMZI_KAFKA_VERSIONS}"
    compose = yaml.safe_load((F.ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["kafka"]["image"] == f"apache/kafka:{version}"
    assert compose["topic-init"]["image"] == f"apache/kafka:{version}"
    for pom, pom_version in _pom_kafka_versions().items():
        assert pom_version == version, f"{pom} runs Kafka {pom_version} in CI, production runs {version}"
