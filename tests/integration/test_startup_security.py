"""Outside the dev profile a service refuses to start with the dev issuer or without an issuer;
the dev profile binds to loopback only. Real processes, as `python -m rnpc_<service>` starts them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnpc_devstack.stack import repo_root

pytestmark = pytest.mark.integration

ISSUER = '[{"issuer": "https://issuer.example", "jwks_uri": "https://issuer.example/jwks"}]'
DEV_ISSUER = '[{"issuer": "urn:rnpc:dev-issuer", "jwks_uri": "https://issuer.example/jwks"}]'
GATEWAY_CREDENTIAL = {
    "GATEWAY_SERVICE_TOKEN_URL": "https://issuer.example/token",
    "GATEWAY_SERVICE_CLIENT_ID": "rnpc-gateway",
    "GATEWAY_SERVICE_CLIENT_SECRET": "s3cret-value",
}


def _start(service: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    base = {"PATH": "/usr/bin:/bin", f"{service.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
            f"{service.upper()}_PORT": "1"}  # port 1: it must refuse before it ever binds
    return subprocess.run([sys.executable, "-m", f"rnpc_{service}"], env=base | env, capture_output=True, text=True,
                          cwd=repo_root(), timeout=120, check=False)


@pytest.mark.parametrize(
    ("service", "env", "reason"),
    [
        ("gateway", {}, "no token issuer configured"),
        ("scoring", {}, "no token issuer configured"),
        ("gateway", {"GATEWAY_DEV_ISSUER_DIR": "/tmp/dev-issuer", **GATEWAY_CREDENTIAL}, "dev token issuer is refused"),
        ("gateway", {"GATEWAY_AUTH_ISSUERS": DEV_ISSUER, **GATEWAY_CREDENTIAL}, "dev token issuer is refused"),
        ("evidence", {"EVIDENCE_AUTH_ISSUERS": '[{"issuer": "x", "jwks_uri": "file:///tmp/jwks.json"}]'}, "must be https://"),
        ("gateway", {"GATEWAY_AUTH_ISSUERS": ISSUER}, "GATEWAY_SERVICE_TOKEN_URL"),
        ("gateway", {"GATEWAY_AUTH_ISSUERS": ISSUER, **GATEWAY_CREDENTIAL}, "GATEWAY_CDS_PUBLIC_BASE_URL"),
        ("recommendation", {"RECOMMENDATION_PROFILE": "dev", "RECOMMENDATION_DEV_ISSUER_DIR": "/tmp/x",
                            "RECOMMENDATION_HOST": "0.0.0.0"}, "binds to loopback only"),
    ],
)
def test_insecure_configuration_refuses_to_start(service: str, env: dict[str, str], reason: str, tmp_path) -> None:  # noqa: ANN001
    result = _start(service, env, tmp_path)
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr and reason in result.stderr, result.stderr[-2000:]
    assert "s3cret-value" not in result.stderr  # the secret is a SecretStr: never printed


def test_secrets_are_not_shown_in_settings() -> None:
    from rnpc_gateway.settings import GatewaySettings

    settings = GatewaySettings(service_client_secret="s3cret-value")  # type: ignore[arg-type]
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    assert settings.service_client_secret is not None and settings.service_client_secret.get_secret_value() == "s3cret-value"
