"""CDS Hooks 2.0 client authentication: the signed JWT of every call (spec § Trusting CDS Clients).

Header `alg` (asymmetric only: `none` and HMAC refused), `kid`, `typ: JWT`, optional `jku`;
claims `iss` (allowlisted), `aud` (string or array; the exact URL called), `exp`, `iat`, `jti`
(all required; a `jti` seen before is a replay). A `jku` is checked against the issuer's
allowlist BEFORE anything is fetched (PyJWKClient does neither check, so it is not used).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from jwt import PyJWK

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"})
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
JWKS_CACHE_S = 300.0


class CdsAuthError(Exception):
    """Refused: `reason` is a short stable label (metrics), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    jwks: dict[str, Any]  # {"keys": [...]} known out of band (may be empty when jku is used)
    jku: tuple[str, ...] = ()  # JWK Set URLs this issuer may point to


@dataclass(frozen=True)
class VerifiedClient:
    iss: str
    jti: str
    expires_at: datetime
    tenant: str | None
    claims: dict[str, Any]


def parse_issuers(entries: Any) -> dict[str, TrustedIssuer]:
    """The trusted-issuers file: [{"iss": ..., "jwks": {"keys": [...]}, "jku": [...]}]."""
    out = {}
    for entry in entries or []:
        out[str(entry["iss"])] = TrustedIssuer(str(entry["iss"]), dict(entry.get("jwks") or {"keys": []}), tuple(entry.get("jku") or ()))
    return out


class IssuerFile:
    """Trusted issuers read from a JSON file, re-read when it changes (no restart to add a client)."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._mtime: float | None = None
        self._issuers: dict[str, TrustedIssuer] = {}

    def issuers(self) -> dict[str, TrustedIssuer]:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return {}  # no file: no trusted client, every signed call is refused
        if mtime != self._mtime:
            self._issuers = parse_issuers(json.loads(self._path.read_text()))
            self._mtime = mtime
        return self._issuers


JwksFetcher = Callable[[str], Awaitable[dict[str, Any]]]


class JkuFetcher:
    """Fetches (allowlisted) JWK Set URLs, cached for a few minutes."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._timeout_s = timeout_s

    async def __call__(self, url: str) -> dict[str, Any]:
        cached = self._cache.get(url)
        if cached and time.monotonic() - cached[0] < JWKS_CACHE_S:
            return cached[1]
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(url)
            response.raise_for_status()
            jwks = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise CdsAuthError("jku_unreachable", f"JWK Set {url} could not be read: {type(exc).__name__}") from exc
        self._cache[url] = (time.monotonic(), jwks)
        return dict(jwks)


@functools.lru_cache(maxsize=64)
def _public_key(jwk_json: str, alg: str) -> Any:
    """A JWK's key object, built once (building it costs more than checking a signature)."""
    return PyJWK(json.loads(jwk_json), algorithm=alg).key


def _key_for(jwks: dict[str, Any], kid: str) -> dict[str, Any] | None:
    return next((k for k in jwks.get("keys") or [] if isinstance(k, dict) and k.get("kid") == kid), None)


async def verify_cds_jwt(
    token: str,
    *,
    audience: str,
    issuers: dict[str, TrustedIssuer],
    fetch_jwks: JwksFetcher,
    now: float | None = None,
    leeway_s: float = 30.0,
    max_lifetime_s: float = 3600.0,
) -> VerifiedClient:
    """Verify one CDS Hooks JWT; raises CdsAuthError. `jti` replay is the caller's (it needs a store)."""
    try:
        parts = jwt.decode_complete(token, options={"verify_signature": False})  # one parse for header and claims
    except jwt.PyJWTError as exc:
        raise CdsAuthError("malformed", f"not a JWT: {exc}") from exc
    header, unverified = parts["header"], parts["payload"]
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:  # a list or object is not hashable: refused, not a 500
        raise CdsAuthError("algorithm", f"alg {alg!r} refused: asymmetric algorithms only (ES384 / RS384 recommended)")
    if header.get("typ") != "JWT":
        raise CdsAuthError("typ", "header typ must be 'JWT'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CdsAuthError("kid", "header kid is required")
    issuer = issuers.get(str(unverified.get("iss")))
    if issuer is None:
        raise CdsAuthError("issuer", f"iss {unverified.get('iss')!r} is not a trusted CDS client")
    jku = header.get("jku")
    if jku is not None and jku not in issuer.jku:
        raise CdsAuthError("jku", f"jku {jku!r} is not allowlisted for {issuer.iss}")  # before any fetch
    jwk = _key_for(issuer.jwks, kid)
    if jwk is None and jku is not None:
        jwk = _key_for(await fetch_jwks(jku), kid)
    if jwk is None:
        raise CdsAuthError("kid", f"no key {kid!r} for {issuer.iss}")
    try:
        claims = jwt.decode(
            token, _public_key(json.dumps(jwk, sort_keys=True), alg), algorithms=[alg], audience=audience, issuer=issuer.iss,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidAudienceError as exc:
        raise CdsAuthError("audience", f"aud must be the URL called ({audience})") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise CdsAuthError("claims", str(exc)) from exc
    except jwt.PyJWTError as exc:
        raise CdsAuthError("signature", f"JWT refused: {exc}") from exc
    at = time.time() if now is None else now
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
        raise CdsAuthError("claims", "exp and iat must be numbers")
    if exp + leeway_s < at:
        raise CdsAuthError("expired", "the JWT has expired")
    if iat - leeway_s > at:
        raise CdsAuthError("not_yet_valid", "iat is in the future")
    if exp - iat > max_lifetime_s:
        raise CdsAuthError("lifetime", f"exp - iat exceeds {max_lifetime_s:g} s")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise CdsAuthError("claims", "jti must be a non-empty string")
    return VerifiedClient(
        iss=issuer.iss, jti=claims["jti"], expires_at=datetime.fromtimestamp(exp, UTC) + timedelta(seconds=leeway_s),
        tenant=claims.get("tenant"), claims=claims,
    )
