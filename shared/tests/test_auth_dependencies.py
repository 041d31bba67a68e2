"""`require_scope`: a route's scope check verifies the token once however many guards the route
has, refuses before the route's code runs, and is one dependency node (the bearer scheme itself).
(In-process app; the keys are a dev issuer's on disk.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from rnpc_shared.auth import (
    SCOPE_EVIDENCE_READ,
    AuthError,
    IssuerConfig,
    Principal,
    TokenVerifier,
    declared_scopes,
    require_scope,
)
from rnpc_shared.devissuer import DEV_ISSUER, GATEWAY_AUDIENCE, DevIssuer, ensure_dev_issuer


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return ensure_dev_issuer(tmp_path / "issuer")


@pytest.fixture
def app(issuer: DevIssuer) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    verifier = TokenVerifier([IssuerConfig(issuer=DEV_ISSUER, jwks_uri=issuer.jwks_path.as_uri())], audience=GATEWAY_AUDIENCE, leeway_s=30)
    verified: list[str] = []
    verify = verifier.verify

    async def counting(token: str) -> Principal:
        verified.append(token)
        return await verify(token)

    verifier.verify = counting  # type: ignore[method-assign]
    app.state.token_verifier = verifier
    app.add_exception_handler(AuthError, lambda request, exc: exc.response(instance=request.url.path))  # type: ignore[arg-type, attr-defined]

    @app.get("/scoped", dependencies=[require_scope(SCOPE_EVIDENCE_READ)])
    async def scoped(who: Annotated[Principal, require_scope(SCOPE_EVIDENCE_READ)]) -> str:
        return who.subject

    return app, verified


def test_the_scope_check_verifies_once_and_later_code_reuses_its_principal(app: tuple[FastAPI, list[str]], issuer: DevIssuer) -> None:
    application, verified = app
    token = issuer.mint([SCOPE_EVIDENCE_READ], subject="clinician")
    response = TestClient(application).get("/scoped", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json() == "clinician"
    assert verified == [token]


def test_the_scope_check_refuses_before_later_code_runs(app: tuple[FastAPI, list[str]], issuer: DevIssuer) -> None:
    application, _ = app
    client = TestClient(application)
    assert client.get("/scoped").status_code == 401
    response = client.get("/scoped", headers={"Authorization": f"Bearer {issuer.mint(['user/Recommendation.read'])}"})
    assert response.status_code == 403 and SCOPE_EVIDENCE_READ in response.json()["detail"]


def test_the_scope_check_is_one_dependency_node(app: tuple[FastAPI, list[str]]) -> None:
    """FastAPI solves every node on every request (~40 µs each): the guard is the scheme itself."""
    application, _ = app
    [route] = [r for r in application.routes if isinstance(r, APIRoute) and r.path == "/scoped"]
    guards = route.dependant.dependencies
    assert len(guards) == 2 and all(guard.dependencies == [] for guard in guards)


def test_a_scoped_route_declares_exactly_its_scope(app: tuple[FastAPI, list[str]]) -> None:
    application, _ = app
    openapi = application.openapi()
    assert declared_scopes(openapi)[("GET", "/scoped")] == [SCOPE_EVIDENCE_READ]
    assert openapi["paths"]["/scoped"]["get"]["security"] == [{"bearer": [SCOPE_EVIDENCE_READ]}]


def _unsigned(header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part({'sub': 'x'})}.c2ln"


@pytest.mark.parametrize("alg", ["€", 'RS256" , scope="system/Admin.write', "\\"])
def test_token_text_never_reaches_the_challenge_header_unescaped(app: tuple[FastAPI, list[str]], alg: str) -> None:
    application, _ = app
    response = TestClient(application).get("/scoped", headers={"Authorization": f"Bearer {_unsigned({'alg': alg, 'typ': 'at+jwt', 'kid': 'k'})}"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.isascii() and challenge.count('"') == 6 and "\\" not in challenge  # realm, error, error_description
    assert alg in response.json()["detail"]  # the body (JSON) says what was refused as it was
