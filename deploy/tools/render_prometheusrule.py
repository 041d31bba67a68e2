#!/usr/bin/env python3
"""Render deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yml.

The alert rules are written once, in deploy/prometheus/alerts.yml (loaded by the
docker-compose Prometheus and unit-tested with promtool). Kubernetes gets the same groups
wrapped in a Prometheus Operator PrometheusRule. tests/deploy fails when the two differ.

    python deploy/tools/render_prometheusrule.py            # rewrite the manifest
    python deploy/tools/render_prometheusrule.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1]
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
TARGET = DEPLOY / "k8s" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/tools/render_prometheusrule.py:
# edit alerts.yml, then re-run the script. The Prometheus Operator picks the rules up when its
# ruleSelector matches these labels: kube-prometheus-stack selects by its Helm release label
# (release: kube-prometheus-stack; change it if the stack was installed under another name).
"""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "rnpc-alerts",
            "namespace": "rnpc",
            "labels": {"app.kubernetes.io/part-of": "rnpc-advisor", "release": "kube-prometheus-stack"},
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the manifest is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
