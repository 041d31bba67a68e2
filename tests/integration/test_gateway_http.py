"""Gateway HTTP behaviour in-process: the /v1/evaluate concurrency limit, audited recommendation reads.

The upstream services are replaced by a controllable stand-in (the limit is the gateway's own
behaviour); one request is held inside the limit until the test releases it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rnpc_devstack.stack import migrate
from rnpc_shared.auth import SCOPE_ADMIN, SCOPE_RECOMMENDATION_READ
from rnpc_shared.devissuer import user_scopes
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway import audit
from rnpc_gateway.app import create_app
from rnpc_gateway.tables import RecommendationView
from rnpc_shared.db import make_engine, new_row, utc_now
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.upstream import get_upstream


class HeldUpstream:
    """Answers every computation with a fixed JSON; the first call waits for `release`."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def call_raw(self, service: str, path: str, *, body: bytes, params: Any = None) -> bytes:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await self.release.wait()
        json.loads(body)  # what the gateway composed is JSON
        return json.dumps({"service": service}).encode()


@pytest.fixture
async def gateway(
    tmp_path: Path, dev_profile: dict[str, str], auth_headers: Callable[..., dict[str, str]]
) -> AsyncIterator[tuple[httpx.AsyncClient, HeldUpstream]]:
    settings = GatewaySettings(
        **dev_profile,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        run_consumer=False,
        run_relay=False,
        evaluate_max_concurrency=1,
        evaluate_retry_after_s=2,
    )
    await asyncio.to_thread(migrate, "gateway", settings.database_url.get_secret_value())  # calls are audited
    app = create_app(settings)
    upstream = HeldUpstream()
    app.dependency_overrides[get_upstream] = lambda: upstream
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=auth_headers()
        ) as client:
            yield client, upstream


async def test_evaluate_beyond_the_concurrency_limit_answers_503_with_retry_after(gateway, example_record) -> None:  # noqa: ANN001
    client, upstream = gateway
    held = asyncio.create_task(client.post("/v1/evaluate", json=example_record))
    await asyncio.wait_for(upstream.entered.wait(), timeout=30)  # the one slot is taken

    refused = await client.post("/v1/evaluate", json=example_record)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["status"], problem["type"], problem["limit"]) == (503, "https://rnpc.example/problems/overloaded", 1)

    upstream.release.set()
    answered = await asyncio.wait_for(held, timeout=30)
    assert answered.status_code == 200
    assert answered.json() == {
        "scores": {"service": "scoring"},
        "evidence": {"service": "evidence"},
        "recommendation": {"service": "recommendation"},
    }
    again = await client.post("/v1/evaluate", json=example_record)  # the slot was given back
    assert again.status_code == 200


async def test_a_refused_scope_is_audited_and_an_anonymous_probe_is_not(gateway, auth_headers) -> None:  # noqa: ANN001
    client, _ = gateway
    without_read = [s for s in user_scopes() if s != SCOPE_RECOMMENDATION_READ]
    refused = await client.get("/v1/recurrences/case-7/recommendation", headers=auth_headers(without_read))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    junk_id = await client.get("/v1/recurrences/" + "x" * 300 + "/recommendation", headers=auth_headers(without_read))
    assert junk_id.status_code == 403
    assert (await client.get("/v1/recurrences/case-7/recommendation", headers={"Authorization": "Bearer nonsense"})).status_code == 401

    trail = (await client.get("/v1/audit")).json()["entries"]
    refusals = [(e["action"], e["route"], e["recurrence_id"], e["status"], e["detail"]) for e in trail if e["action"] == "refused"]
    route = "GET /v1/recurrences/{recurrence_id}/recommendation"
    assert refusals == [("refused", route, "case-7", 403, "insufficient_scope"), ("refused", route, None, 403, "insufficient_scope")]
    assert len(trail) == 2  # the 401 left no row (this read of the trail is recorded after its answer is built)
    assert {e["subject"] for e in trail} == {"dev-user"}


async def test_recommendation_reads_are_audited_in_their_own_unit_of_work(gateway, example_record, tmp_path) -> None:  # noqa: ANN001
    """A stored recommendation, a pending one and an unknown case, read concurrently (one group
    commit's batch): each answered as before and audited once, with the version it read; a 404
    does not fail the reads it shares a batch with, and the chain stays whole."""
    client, _ = gateway
    for case, version in (("case-stored", 1), ("case-stored", 2), ("case-pending", 1)):
        accepted = await client.post("/v1/recurrences", json=example_record | {"recurrence_id": case, "version": version})
        assert accepted.status_code == 202
    body = '{"recurrence_id": "case-stored", "version": 2}'
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    async with engine.begin() as connection:
        await connection.execute(RecommendationView.__table__.insert(), new_row(  # type: ignore[attr-defined]
            RecommendationView, recurrence_id="case-stored", version=2, status="recommended", rules_version="r",
            evidence_version="e", body=body, issued_at=utc_now(),
        ))
    await engine.dispose()

    cases = ["case-stored", "case-pending", "case-unknown"] * 4
    answers = await asyncio.gather(*(client.get(f"/v1/recurrences/{case}/recommendation") for case in cases))
    for case, answer in zip(cases, answers, strict=True):
        if case == "case-stored":
            assert (answer.status_code, answer.text) == (200, body)
        else:
            assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
    assert answers[1].json()["latest_version"] == 1 and answers[1].json()["title"] == "Recommendation not ready"
    assert answers[2].json()["title"] == "Recurrence not found"

    trail = (await client.get("/v1/audit")).json()["entries"]
    reads = {e["correlation_id"]: (e["recurrence_id"], e["version"], e["status"], e["detail"]) for e in trail if e["action"] == "read"}
    expected = {
        "case-stored": ("case-stored", 2, 200, None),
        "case-pending": ("case-pending", None, 404, "Recommendation not ready"),
        "case-unknown": ("case-unknown", None, 404, "Recurrence not found"),
    }
    assert reads == {answer.headers["x-correlation-id"]: expected[case] for case, answer in zip(cases, answers, strict=True)}
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    async with AsyncSession(engine) as session:
        assert await audit.verify(session) == []
    await engine.dispose()


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_reevaluation_since_outside_utc_years_is_a_422_naming_it(gateway, auth_headers, since: str) -> None:  # noqa: ANN001
    client, _ = gateway
    response = await client.get("/v1/admin/reevaluate", params={"since": since}, headers=auth_headers([SCOPE_ADMIN]))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "query.since" and "1-9999" in error["message"]


async def test_a_token_header_outside_latin_1_is_a_401(gateway) -> None:  # noqa: ANN001
    client, _ = gateway
    header = base64.urlsafe_b64encode(json.dumps({"alg": "€", "typ": "at+jwt", "kid": "k"}).encode()).rstrip(b"=").decode()
    response = await client.get("/v1/recurrences/case-7", headers={"Authorization": f"Bearer {header}.e30.c2ln"})
    assert response.status_code == 401 and response.headers["www-authenticate"].isascii()
