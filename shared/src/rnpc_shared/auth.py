"""Bearer-token authentication and scope authorisation, shared by every service.

Access tokens are JWTs in the RFC 9068 profile (`typ: at+jwt`) from configured issuers; keys
come from each issuer's JWKS (cached, re-read every `JWKS_MAX_AGE_S`, re-fetched on an unknown
`kid` at most once per `JWKS_MIN_REFRESH_S`). Only asymmetric algorithms are accepted, so `none` and HMAC (including
"HS256 signed with the public key") are refused before any key is looked at.

Routes declare what they need with `require_scope("user/Recommendation.read")`; the scope shows
in the route's OpenAPI `security`, which `declared_scopes` reads back, so a test can prove that no
route is left without one.
"""


import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from rnpc_shared.problems import ProblemError

log = logging.getLogger(__name__)

# Asymmetric only: a verifier never shares a secret with the issuer it trusts.
ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA")
ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
JWKS_MIN_REFRESH_S = 30.0  # an unknown kid re-fetches the JWKS at most this often (no fetch storms)
# A key withdrawn from its issuer's JWKS stops being honoured within KEY_WITHDRAWAL_S: the JWKS is
# re-read on the first call once it is JWKS_MAX_AGE_S old, and a verified token is trusted again
# without its signature check for at most VERIFIED_TOKEN_TTL_S (never past its exp). While the
# JWKS cannot be read, the keys read last are kept (an issuer outage does not refuse every call).
KEY_WITHDRAWAL_S = 60.0
JWKS_MAX_AGE_S = 30.0
VERIFIED_TOKEN_TTL_S = KEY_WITHDRAWAL_S - JWKS_MAX_AGE_S
VERIFIED_TOKEN_CACHE_SIZE = 4096
REALM = "rnpc"

# One scope per capability, SMART-style `<context>/<resource>.<permission>`.
SCOPE_RECORD_WRITE = "user/RecurrenceRecord.write"
SCOPE_RECORD_READ = "user/RecurrenceRecord.read"
SCOPE_RECOMMENDATION_READ = "user/Recommendation.read"
SCOPE_EVIDENCE_READ = "user/Evidence.read"
SCOPE_CALCULATOR_RUN = "user/Calculator.execute"
SCOPE_ADMIN = "system/Admin.write"
SCOPE_AUDIT_READ = "system/AuditEvent.read"
SCOPE_INTERNAL = "system/Internal.execute"  # service-to-service calls of /internal routes

SCOPES: dict[str, str] = {
    SCOPE_RECORD_WRITE: "Submit recurrence record versions",
    SCOPE_RECORD_READ: "Read a case: its record versions, stage states and dead letters",
    SCOPE_RECOMMENDATION_READ: "Read a case's current recommendation",
    SCOPE_EVIDENCE_READ: "Read the evidence base and pooled estimates",
    SCOPE_CALCULATOR_RUN: "Run the calculators (scores, schedules, synchronous evaluation)",
    SCOPE_ADMIN: "Administrative actions (manual re-drive)",
    SCOPE_AUDIT_READ: "Read the audit trail",
    SCOPE_INTERNAL: "Service-to-service calls of an internal service's /internal routes",
}

class IssuerConfig(BaseModel):
    """A trusted token issuer: its `iss` value and where its JWKS is (https://, or file:// in dev)."""

    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(min_length=1)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    subject: str
    client_id: str | None
    scopes: frozenset[str]
    issuer: str
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


class AuthError(ProblemError):
    """401/403 with the RFC 6750 `WWW-Authenticate` challenge."""

    def __init__(
        self, status: int, error: str | None, description: str, *, scope: str | None = None, principal: Principal | None = None
    ) -> None:
        self.principal = principal  # who was refused, when known (403): the gateway audits it
        params = [f'realm="{REALM}"']
        if error is not None:
            params.append(f'error="{error}"')
            params.append(f'error_description="{_header_safe(description)}"')
        if scope is not None:
            params.append(f'scope="{scope}"')
        title = "Unauthorized" if status == 401 else "Forbidden"
        super().__init__(
            status,
            title,
            description,
            type_=f"https://rnpc.example/problems/{error or 'missing-token'}",
            headers={"WWW-Authenticate": "Bearer " + ", ".join(params)},
        )


def _header_safe(text: str) -> str:
    """`text` with only the characters RFC 6750 §3 allows in error_description (printable ASCII
    but `"` and `\\`): a token's own text may be part of it, and a header is latin-1."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def invalid_token(description: str) -> AuthError:
    return AuthError(401, "invalid_token", description)


class JwksCache:
    """One issuer's keys by kid: fetched lazily, re-read once JWKS_MAX_AGE_S old, re-fetched on
    an unknown kid (rate limited); a failed fetch keeps the keys read last."""

    def __init__(self, jwks_uri: str, *, min_refresh_s: float = JWKS_MIN_REFRESH_S, http_timeout_s: float = 5.0) -> None:
        self._uri = jwks_uri
        self._min_refresh_s = min_refresh_s
        self._timeout_s = http_timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()

    async def _load(self) -> dict[str, Any]:
        parsed = urlparse(self._uri)
        if parsed.scheme == "file":
            return dict(json.loads(Path(parsed.path).read_text()))
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            response = await client.get(self._uri)
            response.raise_for_status()
            return dict(response.json())

    async def _refresh(self) -> None:
        try:
            document = await self._load()
        except (OSError, ValueError, httpx.HTTPError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self._uri, type(exc).__name__)
            self._fetched_at = time.monotonic()  # failures are rate limited too
            return
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in document.get("keys", []):
            kid = jwk.get("kid")
            if not isinstance(kid, str) or jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[kid] = jwt.PyJWK(jwk)
            except jwt.PyJWTError:
                continue  # an unsupported key type is skipped, not fatal
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        async with self._lock:
            age_s = time.monotonic() - self._fetched_at
            if age_s > JWKS_MAX_AGE_S or (kid not in self._keys and age_s > self._min_refresh_s):
                await self._refresh()
            return self._keys.get(kid)


class TokenVerifier:
    """Verifies access tokens for one audience against the configured issuers."""

    def __init__(
        self,
        issuers: Iterable[IssuerConfig],
        *,
        audience: str,
        leeway_s: float = 30.0,
        required_typ: str | None = ACCESS_TOKEN_TYP,
        jwks_min_refresh_s: float = JWKS_MIN_REFRESH_S,
    ) -> None:
        self._jwks = {issuer.issuer: JwksCache(issuer.jwks_uri, min_refresh_s=jwks_min_refresh_s) for issuer in issuers}
        self.audience = audience
        self._leeway_s = leeway_s
        self._required_typ = required_typ
        # token → (principal, exp epoch s, trusted until monotonic s); oldest first, bounded
        self._verified: dict[str, tuple[Principal, float, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The token's principal. A token verified in the last VERIFIED_TOKEN_TTL_S is not checked
        again (the signature check is most of an API call's authentication cost); its expiry is."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, exp_s, trusted_until_s = cached
            if time.time() > exp_s + self._leeway_s:
                del self._verified[token]
                raise invalid_token("token expired")
            if time.monotonic() < trusted_until_s:
                return principal
            del self._verified[token]
        principal = await self._verify_signed(token)
        if len(self._verified) >= VERIFIED_TOKEN_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, float(principal.claims["exp"]), time.monotonic() + VERIFIED_TOKEN_TTL_S)
        return principal

    async def _verify_signed(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise invalid_token("malformed token") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise invalid_token(f"algorithm {algorithm!r} is not accepted")
        typ = str(header.get("typ", "")).lower().removeprefix("application/")
        if self._required_typ is not None and typ != self._required_typ:
            raise invalid_token(f"token type must be {self._required_typ}")
        issuer = unverified.get("iss")
        cache = self._jwks.get(issuer) if isinstance(issuer, str) else None
        if cache is None or not isinstance(issuer, str):
            raise invalid_token("untrusted issuer")
        kid = header.get("kid")
        key = await cache.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise invalid_token("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise invalid_token("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise invalid_token("token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise invalid_token("token not issued for this audience") from exc
        except jwt.PyJWTError as exc:
            raise invalid_token(f"token rejected: {type(exc).__name__}") from exc
        return Principal(
            subject=str(claims["sub"]),
            client_id=_client_id(claims),
            scopes=_scopes(claims),
            issuer=issuer,
            claims=claims,
        )


def _client_id(claims: dict[str, Any]) -> str | None:
    value = claims.get("client_id", claims.get("azp"))
    return str(value) if value is not None else None


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(str(s) for s in scope)
    return frozenset()


BEARER_DESCRIPTION = "OAuth 2.0 access token (JWT, RFC 9068). In the dev profile: `make token`."


def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise ProblemError(503, "Authentication unavailable", "no token verifier is configured")
    return verifier


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller's principal, or 401. Cached on the request (a route may have several guards)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if credentials is None:
        raise AuthError(401, None, "a bearer access token is required")
    principal = await get_verifier(request).verify(credentials.credentials)
    request.state.principal = principal
    return principal


class ScopeGuard(HTTPBearer):
    """The bearer scheme and the scope check in ONE dependency: the caller holding `scope`, else
    401/403. Being the scheme itself (not a function with the scheme as a sub-dependency), it is
    one node for FastAPI to solve on every request instead of two (~40 µs each on the 2-core
    machine, most of an audited read's framework time). Use through `require_scope`."""

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"undeclared scope {scope!r}; add it to rnpc_shared.auth.SCOPES")
        super().__init__(bearerFormat="JWT", auto_error=False, scheme_name="bearer", description=BEARER_DESCRIPTION)
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await authenticate(request, await super().__call__(request))
        if self.scope not in principal.scopes:
            raise AuthError(403, "insufficient_scope", f"this route needs the scope {self.scope}", scope=self.scope, principal=principal)
        return principal


def require_scope(scope: str) -> Any:
    """A FastAPI dependency: the authenticated caller holding `scope`, else 401/403.

    Use as `dependencies=[require_scope(...)]` on a route, or as a parameter
    `principal: Annotated[Principal, require_scope(...)]`. The scope shows in the route's OpenAPI
    `security` (`declared_scopes`)."""
    return Security(ScopeGuard(scope), scopes=[scope])


def declared_scopes(openapi: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(METHOD, path) → the scopes each operation of an OpenAPI document requires ([] = open)."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        (method.upper(), path): [scope for requirement in operation.get("security", []) for scopes in requirement.values() for scope in scopes]
        for path, item in openapi.get("paths", {}).items()
        for method, operation in item.items()
        if method in methods
    }


def smart_security_scheme(token_url: str) -> dict[str, Any]:
    """OpenAPI description of the scopes (client-credentials flow), so /docs lists them."""
    return {
        "type": "oauth2",
        "description": "SMART-style scopes; every route states the one it needs.",
        "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": dict(SCOPES)}},
    }
