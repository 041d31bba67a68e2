"""Service credentials: the access token a service sends when it calls another's /internal routes.

Production: OAuth 2.0 client credentials at the issuer's token endpoint (RFC 6749 §4.4), one
token per audience (RFC 8707 `resource`), reused until shortly before it expires. Dev profile:
minted locally with the dev issuer's key.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import SecretStr

from rnpc_shared.auth import SCOPE_INTERNAL
from rnpc_shared.problems import ProblemError

RENEW_BEFORE_EXPIRY_S = 60.0


class ServiceTokenSource(Protocol):
    async def token(self, audience: str) -> str: ...


class _Cache:
    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}  # audience → (token, monotonic expiry)
        self._lock = asyncio.Lock()

    def get(self, audience: str) -> str | None:
        cached = self._tokens.get(audience)
        if cached is not None and time.monotonic() < cached[1] - RENEW_BEFORE_EXPIRY_S:
            return cached[0]
        return None

    def put(self, audience: str, token: str, ttl_s: float) -> None:
        self._tokens[audience] = (token, time.monotonic() + ttl_s)


class DevServiceTokens:
    """Dev profile only: tokens signed with the local dev issuer's key."""

    def __init__(self, issuer_dir: Path, *, subject: str, ttl_s: int) -> None:
        from rnpc_shared.devissuer import DevIssuer

        self._issuer = DevIssuer(issuer_dir)
        self._subject = subject
        self._ttl_s = ttl_s
        self._cache = _Cache()

    async def token(self, audience: str) -> str:
        cached = self._cache.get(audience)
        if cached is not None:
            return cached
        token = self._issuer.mint(
            [SCOPE_INTERNAL], audience=audience, subject=self._subject, client_id=self._subject, ttl_s=self._ttl_s
        )
        self._cache.put(audience, token, self._ttl_s)
        return token


class ClientCredentialsTokens:
    """OAuth 2.0 client credentials; the secret is a SecretStr and never logged."""

    def __init__(self, client: httpx.AsyncClient, *, token_url: str, client_id: str, client_secret: SecretStr) -> None:
        self._client = client
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._cache = _Cache()

    async def token(self, audience: str) -> str:
        async with self._cache._lock:
            cached = self._cache.get(audience)
            if cached is not None:
                return cached
            try:
                response = await self._client.post(
                    self._token_url,
                    data={"grant_type": "client_credentials", "scope": SCOPE_INTERNAL, "resource": audience, "audience": audience},
                    auth=(self._client_id, self._client_secret.get_secret_value()),
                )
                response.raise_for_status()
                body = response.json()
                token, ttl_s = str(body["access_token"]), float(body.get("expires_in", 300))
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                raise ProblemError(503, "Service credential unavailable", f"token endpoint: {type(exc).__name__}") from exc
            self._cache.put(audience, token, ttl_s)
            return token
