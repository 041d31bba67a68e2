"""Local CDS Hooks client identity: an ES384 key pair, its trusted-issuers entry, signed tokens.

`make cds-token [AUD=<url called>]` writes .var/cds-dev/{key.json,trusted-issuers.json} on first
use (the gateway reads the latter by default) and prints a token for that exact URL. Also used
by the gateway's tests and the benchmarks. Development only, hence here in rnpc_devstack and not in
the gateway package production images install: production lists the real EHR issuers and their
JWKS / jku in GATEWAY_CDS_TRUSTED_ISSUERS_FILE.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

DEV_DIR = Path(".var/cds-dev")
DEV_ISSUER = "urn:rnpc:dev-cds-client"
DEFAULT_AUD = "http://127.0.0.1:8000/cds-services/rnpc-patient-view"


def new_private_jwk(kid: str | None = None) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key))
    jwk.update({"kid": kid or str(uuid.uuid4()), "alg": "ES384", "use": "sig"})
    return jwk


def public_jwk(private: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in private.items() if k != "d"}


def issuer_entry(iss: str, private: dict[str, Any], jku: list[str] | None = None) -> dict[str, Any]:
    return {"iss": iss, "jwks": {"keys": [public_jwk(private)]}, "jku": jku or []}


def sign(private: dict[str, Any], *, iss: str, aud: str | list[str], lifetime_s: int = 300, now: float | None = None,
         jti: str | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    issued = int(now if now is not None else time.time())
    payload = {"iss": iss, "aud": aud, "iat": issued, "exp": issued + lifetime_s, "jti": jti or str(uuid.uuid4()), **claims}
    key = jwt.PyJWK(private, algorithm="ES384").key
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": private["kid"], "typ": "JWT", **(headers or {})})


def ensure_dev_identity(directory: Path = DEV_DIR) -> dict[str, Any]:
    key_path = directory / "key.json"
    if not key_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        private = new_private_jwk("rnpc-dev")
        key_path.write_text(json.dumps(private))
        key_path.chmod(0o600)
        (directory / "trusted-issuers.json").write_text(json.dumps([issuer_entry(DEV_ISSUER, private)], indent=2))
    return dict(json.loads(key_path.read_text()))


def main() -> None:
    aud = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else DEFAULT_AUD
    print(sign(ensure_dev_identity(), iss=DEV_ISSUER, aud=aud))


if __name__ == "__main__":
    main()
