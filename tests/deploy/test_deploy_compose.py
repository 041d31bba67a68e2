"""docker-compose.yml, the image build (deploy/docker) and the helper scripts."""

from __future__ import annotations

import re

from pathlib import Path
from typing import Any

import pytest
import yaml
import deploy_facts as F  # on sys.path via tests/deploy/conftest.py
COMPOSE = F.ROOT / "docker-compose.yml"
DOCKERFILE = F.DEPLOY / "docker" / "Dockerfile"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: v.get("condition", "service_started") for k, v in deps.items()}


# --------------------------------------------------------------------------- compose

def test_compose_has_the_whole_stack() -> None:
    want = {"kafka", "topic-init", "postgres", "prometheus", "grafana", *F.SERVICES}
    want |= {f"migrate-{svc}" for svc in F.SERVICES}
    assert set(_services()) == want


def test_kafka_is_a_pinned_single_node_kraft_broker() -> None:
    kafka = _services()["kafka"]
    assert re.fullmatch(r"apache/kafka:[34]\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["healthcheck"]["test"]


def test_topic_init_creates_every_topic() -> None:
    init = _services()["topic-init"]
    assert init["image"] == _services()["kafka"]["image"]
    assert _depends(init) == {"kafka": "service_healthy"}
    script = (F.DEPLOY / "compose" / "create-topics.sh").read_text()
    listed = set(re.search(r"TOPICS=\(\n(.*?)\n\)", script, flags=re.S).group(1).split())
    assert listed | {f"{t}.dlq" for t in listed} == F.TOPICS
    assert '"${topic}.dlq"' in script and "--if-not-exists" in script
    assert f"DLQ_RETENTION_MS={F.DLQ_RETENTION_MS}" in script
    assert f"RETENTION_MS={F.RETENTION_MS}" in script
    assert _env(init)["TOPIC_PARTITIONS"] == "6"


def test_postgres_creates_one_database_per_service() -> None:
    pg = _services()["postgres"]
    assert pg["image"] == "postgres:16"
    assert any(v.endswith(".sql:ro") and "/docker-entrypoint-initdb.d/" in v for v in pg["volumes"])
    sql = (F.DEPLOY / "compose" / "postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)\s+OWNER (\w+);", sql))
    assert created == {(svc, svc) for svc in F.SERVICES}
    assert pg["healthcheck"]["test"]


@pytest.mark.parametrize("svc", sorted(F.SERVICES))
def test_service_and_its_migration_one_shot(svc: str) -> None:
    services = _services()
    prefix = svc.upper()
    migrate, app = services[f"migrate-{svc}"], services[svc]

    for s in (migrate, app):
        assert s["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert s["build"]["args"] == {"SERVICE": svc}
        assert s["image"] == f"rnpc/{svc}:dev"
        assert s.get("read_only") is True

    assert migrate["command"] == ["alembic", "-c", "migrations/alembic.ini", "-n", svc, "upgrade", "head"]
    assert migrate["restart"] == "no"
    assert _depends(migrate) == {"postgres": "service_healthy"}

    deps = _depends(app)
    assert deps[f"migrate-{svc}"] == "service_completed_successfully"
    assert deps["kafka"] == "service_healthy"
    assert deps["topic-init"] == "service_completed_successfully"

    env = _env(app)
    port = F.SERVICES[svc]
    assert env[f"{prefix}_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env[f"{prefix}_DATABASE_URL"].endswith(f"@postgres:5432/{svc}")
    assert _env(migrate)[f"{prefix}_DATABASE_URL"] == env[f"{prefix}_DATABASE_URL"]
    assert env[f"{prefix}_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env[f"{prefix}_KAFKA_FETCH_MAX_WAIT_MS"] == "500"
    assert env[f"{prefix}_RUN_API"] == "true" and env[f"{prefix}_RUN_CONSUMER"] == "true"
    assert env[f"{prefix}_PORT"] == str(port)
    assert env[f"{prefix}_HOST"] == "0.0.0.0", "the settings default to 127.0.0.1"
    assert env[f"{prefix}_LOG_LEVEL"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(app["healthcheck"]["test"])
    if svc == "gateway":
        assert env["GATEWAY_SCORING_URL"] == "http://scoring:8001"
        assert env["GATEWAY_EVIDENCE_URL"] == "http://evidence:8002"
        assert env["GATEWAY_RECOMMENDATION_URL"] == "http://recommendation:8003"
        assert app["ports"] == ["127.0.0.1:8000:8000"]
    else:
        assert "ports" not in app, "only the gateway is published"


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in _services().items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_bind_mounts_exist() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (F.ROOT / source).exists(), f"{name}: {source}"


def test_prometheus_loads_the_config_and_rules() -> None:
    prom = _services()["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]


def _compose_cli() -> list[str] | None:
    if F.tool("docker") and F.run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    if F.tool("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.deploy_tools
def test_compose_cli_accepts_the_file() -> None:
    cli = _compose_cli()
    assert cli is not None, "no docker compose plugin / docker-compose (deploy/validate.sh installs it)"
    result = F.run([*cli, "-f", str(COMPOSE), "config", "-q"])
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- image

def test_dockerfile_builds_one_service_with_only_its_dependencies() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG SERVICE" in text
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2, "multi-stage"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert re.search(r'pip install .*"uv==\$\{UV_VERSION\}"', text) and "UV_VERSION=0.13.8" in text
    assert 'uv sync --frozen --no-dev --package "rnpc-${SERVICE}"' in text
    assert "ghcr.io" not in text
    assert "COPY migrations/ /app/migrations/" in text
    # only the selected service's sources go into the image
    assert "COPY services/${SERVICE}/src" in text
    assert not re.search(r"^COPY services/(?!\$\{SERVICE\}|[a-z]+/pyproject\.toml)", text, flags=re.M)
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    # BuildKit reads <Dockerfile>.dockerignore: exclude everything, then allow what is copied
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore and "!migrations/**" in ignore and "!uv.lock" in ignore


@pytest.mark.deploy_tools
def test_hadolint_accepts_the_dockerfile() -> None:
    assert F.tool("hadolint"), "hadolint not installed (deploy/validate.sh installs it)"
    result = F.run(["hadolint", "--config", str(DOCKERFILE.parent / "hadolint.yaml"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- scripts

SCRIPTS = [F.DEPLOY / "validate.sh", F.DEPLOY / "compose" / "create-topics.sh", F.DEPLOY / "create-secrets.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable_and_parse(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    result = F.run(["bash", "-n", str(script)])
    assert result.returncode == 0, result.stderr
    if F.tool("shellcheck"):
        result = F.run(["shellcheck", str(script)])
        assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- authentication

_INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _interpolated(env: dict[str, str], dotenv: dict[str, str]) -> dict[str, str]:
    """What compose passes to the container: ${VAR:-default} from .env (or the shell) or the default."""
    return {k: _INTERPOLATION.sub(lambda m: dotenv.get(m.group(1)) or m.group(2), v) for k, v in env.items()}


OPERATOR_DOTENV = {  # what deploy/README.md tells the operator to put in .env
    "RNPC_AUTH_ISSUERS": '[{"issuer": "https://idp.example.org/realms/rnpc", '
                         '"jwks_uri": "https://idp.example.org/realms/rnpc/protocol/openid-connect/certs"}]',
    "RNPC_AUTH_TOKEN_URL": "https://idp.example.org/realms/rnpc/protocol/openid-connect/token",
    "RNPC_GATEWAY_CLIENT_SECRET": "from-the-identity-provider",
}


@pytest.mark.parametrize("svc", sorted(F.SERVICES))
def test_compose_services_run_the_production_profile_with_the_operators_issuer(svc: str) -> None:
    """Secure by default: with nothing in .env each service refuses to start; with the issuer
    (and, for the gateway, its client credential) from .env it passes its own security check."""
    from rnpc_shared.settings import ConfigurationError

    env = _env(_services()[svc])
    prefix = F.kafka_use()[svc].env_prefix
    assert env[f"{prefix}PROFILE"] == "production", "the dev profile binds to loopback, unreachable here"
    assert env[f"{prefix}HOST"] == "0.0.0.0"
    assert env[f"{prefix}AUTH_ISSUERS"] == "${RNPC_AUTH_ISSUERS:-[]}"
    assert not {k for k in env if "DEV_ISSUER" in k}
    with pytest.raises(ConfigurationError):
        F.settings_from(svc, _interpolated(env, {})).check_security()
    settings = F.settings_from(svc, _interpolated(env, OPERATOR_DOTENV))
    settings.check_security()
    assert settings.audience == f"rnpc-{svc}"
    if svc == "gateway":
        assert env["GATEWAY_SERVICE_CLIENT_SECRET"] == "${RNPC_GATEWAY_CLIENT_SECRET:-}", "no default secret"
