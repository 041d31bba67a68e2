"""The dev profile's token issuer: a local EC P-256 key pair and JWKS under `.var/dev-issuer/`.

`make run` creates it (once) and points every service at it; `make token [SCOPES="…"]` prints a
bearer token signed by it (`make token`, i.e. `python -m rnpc_devstack.token`). Services refuse this issuer
outside the dev profile (see `rnpc_shared.settings`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rnpc_shared.auth import ACCESS_TOKEN_TYP, SCOPE_INTERNAL, SCOPES
from rnpc_shared.settings import DEV_ISSUER
GATEWAY_AUDIENCE = "rnpc-gateway"
DEV_ALGORITHM = "ES256"
DEFAULT_TTL_S = 3600


def service_audience(service: str) -> str:
    return f"rnpc-{service}"


def user_scopes() -> list[str]:
    """Every scope a person's client may hold (the internal one is for services only)."""
    return [scope for scope in SCOPES if scope != SCOPE_INTERNAL]


@dataclass(frozen=True)
class DevIssuer:
    directory: Path

    @property
    def private_key_path(self) -> Path:
        return self.directory / "private.pem"

    @property
    def jwks_path(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def kid(self) -> str:
        return str(json.loads(self.jwks_path.read_text())["keys"][0]["kid"])

    def issuer_config(self) -> dict[str, str]:
        return {"issuer": DEV_ISSUER, "jwks_uri": self.jwks_path.resolve().as_uri()}

    def _private_key(self) -> Any:
        return serialization.load_pem_private_key(self.private_key_path.read_bytes(), password=None)

    def mint(
        self,
        scopes: list[str] | None = None,
        *,
        audience: str = GATEWAY_AUDIENCE,
        subject: str = "dev-user",
        client_id: str = "rnpc-dev-cli",
        ttl_s: int = DEFAULT_TTL_S,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token; `claims`/`headers` override the defaults (tests use them to forge)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": DEV_ISSUER,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "scope": " ".join(user_scopes() if scopes is None else scopes),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims or {})
        header = {"typ": ACCESS_TOKEN_TYP, "kid": self.kid, **(headers or {})}
        return jwt.encode(payload, self._private_key(), algorithm=DEV_ALGORITHM, headers=header)


def ensure_dev_issuer(directory: Path) -> DevIssuer:
    """Create the key pair and JWKS if absent (the private key readable by its owner only)."""
    issuer = DevIssuer(directory)
    if issuer.private_key_path.is_file() and issuer.jwks_path.is_file():
        return issuer
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    issuer.private_key_path.touch(mode=0o600)
    issuer.private_key_path.write_bytes(pem)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": uuid.uuid4().hex[:16], "use": "sig", "alg": DEV_ALGORITHM})
    issuer.jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2))
    return issuer


def dev_env(service: str, directory: Path) -> dict[str, str]:
    """Environment that puts a service in the dev profile, trusting (and, for the gateway,
    minting service tokens with) the dev issuer in `directory`."""
    prefix = service.upper() + "_"
    return {prefix + "PROFILE": "dev", prefix + "DEV_ISSUER_DIR": str(directory.resolve())}
