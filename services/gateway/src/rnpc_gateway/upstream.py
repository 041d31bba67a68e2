"""HTTP client for the synchronous path: gateway → scoring → evidence → recommendation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from rnpc_gateway.settings import GatewaySettings
from rnpc_shared.http import CORRELATION_HEADER
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.problems import ProblemError
from rnpc_shared.service import Runtime
from rnpc_shared.service_tokens import ClientCredentialsTokens, DevServiceTokens, ServiceTokenSource


class Upstream:
    def __init__(self, client: httpx.AsyncClient, settings: GatewaySettings, tokens: ServiceTokenSource) -> None:
        self._client = client
        self._tokens = tokens
        self._base = {
            "scoring": settings.scoring_url,
            "evidence": settings.evidence_url,
            "recommendation": settings.recommendation_url,
        }

    async def call(self, service: str, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        return (await self._request(service, method, path, json=json, params=params)).json()

    async def call_raw(self, service: str, path: str, *, body: bytes, params: Any = None) -> bytes:
        """POST a JSON body given as bytes; the answer's bytes, unparsed (for pass-through)."""
        headers = {"content-type": "application/json"}
        return (await self._request(service, "POST", path, content=body, params=params, headers=headers)).content

    async def _request(
        self, service: str, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {
            CORRELATION_HEADER: correlation_id_var.get() or "",
            "Authorization": f"Bearer {await self._tokens.token(f'rnpc-{service}')}",
            **(headers or {}),
        }
        try:
            response = await self._client.request(method, self._base[service] + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ProblemError(503, "Upstream unavailable", f"the {service} service did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            body = _problem_body(response)
            raise ProblemError(
                response.status_code if response.status_code < 500 else 502,
                body.get("title", f"{service} error"),
                body.get("detail", f"the {service} service answered {response.status_code}"),
                type_=body.get("type", "about:blank"),
                **({"errors": body["errors"]} if "errors" in body else {}),
            )
        return response


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def upstream_resource(runtime: Runtime):  # noqa: ANN201 - an async context manager factory
    @asynccontextmanager
    async def _client() -> AsyncIterator[None]:
        settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
        async with httpx.AsyncClient(timeout=settings.upstream_timeout_s) as client:
            runtime.extras["upstream"] = Upstream(client, settings, service_tokens(settings, client))
            yield

    return _client()


def service_tokens(settings: GatewaySettings, client: httpx.AsyncClient) -> ServiceTokenSource:
    if settings.profile == "dev" and settings.dev_issuer_dir:
        return DevServiceTokens(Path(settings.dev_issuer_dir), subject="rnpc-gateway", ttl_s=settings.service_token_ttl_s)
    assert settings.service_token_url and settings.service_client_id and settings.service_client_secret  # check_security
    return ClientCredentialsTokens(
        client,
        token_url=settings.service_token_url,
        client_id=settings.service_client_id,
        client_secret=settings.service_client_secret,
    )


async def get_upstream(request: Request) -> Upstream:
    return request.app.state.runtime.extras["upstream"]


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]
