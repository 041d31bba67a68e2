#!/usr/bin/env python3
"""Check Kubernetes objects and docker-compose.yml against the real schemas, offline.

- core objects (Deployment, Service, Ingress, ...): kubernetes-validate in strict mode (unknown
  fields rejected), for each Kubernetes version in K8S_VERSIONS;
- custom resources (Strimzi, CloudNativePG, Prometheus Operator): the openAPIV3Schema of the
  version their CRD serves, from the CRDs vendored in deploy/schemas/crds. Made strict like the
  API server's strict field validation (kubectl's default): an object schema that neither lists
  additionalProperties nor preserves unknown fields rejects fields it does not declare;
- docker-compose.yml: the compose-spec JSON schema (deploy/schemas/compose-spec.json).

    kubectl kustomize deploy/k8s | python deploy/tools/check_schemas.py -   # rendered objects
    python deploy/tools/check_schemas.py deploy/k8s/kafka/kafka.yaml ...      # files
    python deploy/tools/check_schemas.py --compose docker-compose.yml

tests/deploy/test_deploy_schemas.py runs the same functions in `make test`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
SCHEMAS = DEPLOY / "schemas"
CRDS = SCHEMAS / "crds"
COMPOSE_SCHEMA = SCHEMAS / "compose-spec.json"

# Oldest and newest Kubernetes minor releases in upstream support (late 2026); kubernetes-validate
# ships both schemas. A field removed or added between them fails one of the two.
K8S_VERSIONS = ("1.35", "1.37")

# kubernetes-validate re-reads its schema files (1.8 MB of JSON per version) for every object;
# they never change, so read each once. validate() looks the function up on its module per call.
kubernetes_validate.utils.schema_contents = cache(kubernetes_validate.utils.schema_contents)


def _strict(schema: Any) -> Any:
    """A copy in which every object schema with declared properties rejects undeclared ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema, for every version a vendored CRD serves."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        # libyaml's loader when present: the CRDs are ~1 MB of YAML
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    found[key] = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return found


def crd_groups() -> set[str]:
    return {api_version.split("/")[0] for api_version, _ in crd_schemas()}


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(root)"


def object_problems(doc: dict[str, Any]) -> list[str]:
    """Schema violations of one Kubernetes object (empty list: valid)."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    name = f"{kind}/{doc.get('metadata', {}).get('name', '?')} ({api_version})"
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group in crd_groups():
        schema = crd_schemas().get((api_version, kind))
        if schema is None:
            served = sorted(v for v, k in crd_schemas() if k == kind)
            return [f"{name}: not served by the vendored CRDs (served: {served or 'none'})"]
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{name}: {_where(e)}: {e.message}" for e in validator.iter_errors(doc)]
    problems: list[str] = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: Kubernetes {version}: {_where(exc)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    return problems


def objects_problems(docs: Iterable[dict[str, Any]]) -> list[str]:
    return [problem for doc in docs for problem in object_problems(doc)]


def compose_problems(compose: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"], schema["$schema"]  # written without the trailing '#'
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"docker-compose: {_where(e)}: {e.message}" for e in validator.iter_errors(compose)]


def _docs(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="YAML files of Kubernetes objects ('-': stdin)")
    parser.add_argument("--compose", action="append", default=[], help="a docker-compose file")
    args = parser.parse_args()
    if not args.files and not args.compose:
        parser.error("nothing to check")
    problems: list[str] = []
    count = 0
    for path in args.files:
        docs = _docs(path)
        count += len(docs)
        problems += objects_problems(docs)
    for path in args.compose:
        count += 1
        problems += compose_problems(yaml.safe_load(Path(path).read_text()))
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(f"{count} object(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
