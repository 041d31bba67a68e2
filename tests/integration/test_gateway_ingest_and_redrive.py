"""The gateway in process over a real database (no broker needed: consumer and relay off).

- 60 concurrent versions of one case: only increasing versions are accepted, the latest wins;
- a record whose event could not fit the broker's message limit is refused (413) before
  anything is stored;
- the re-drive loop survives a database error and re-drives once the database is back;
- a manual re-drive does not use up the automatic budget;
- a record from the inbound topic with an over-long correlation id is accepted under a fresh id
  (the HTTP rule; PostgreSQL refuses more than 64 characters in the stored columns);
- a dead letter whose value was omitted (too large for its copy) is shown on the case with where
  the original is.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text, update
from sqlmodel import Session, col, func, select

from rnpc_gateway import service
from rnpc_devstack.stack import migrate
from rnpc_gateway.app import create_app, redrive_loop
from rnpc_gateway.fhir.inbound import InboundMessage, inbound_handler
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import AuditEntry, DeadLetterNotice, RecordVersion
from rnpc_shared.contracts.events import TOPIC_EHR_INBOUND, CloudEvent, EventHeader
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.db import Units, find_by_version, make_engine, make_session_factory, run_sync, utc_now
from rnpc_shared.http import CORRELATION_ID_PATTERN
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.kafka.consumer import DeadLetter
from rnpc_shared.kafka.tables import OutboxEvent
from rnpc_shared.service import Runtime

pytestmark = pytest.mark.integration


async def eventually(predicate: Callable[[], Awaitable[Any]], deadline_s: float = 30) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.05)  # poll interval under a deadline
    raise AssertionError("condition not met before the deadline")


async def _create_schema(url: str) -> None:
    """The gateway's real migrations (they also seed the audit chain's head row)."""
    await asyncio.to_thread(migrate, "gateway", url)


@pytest.fixture
async def gateway(databases, dev_profile, auth_headers) -> AsyncIterator[tuple[httpx.AsyncClient, GatewaySettings]]:  # noqa: ANN001
    settings = GatewaySettings(
        **dev_profile,
        database_url=databases.new_url("gateway"), run_consumer=False, run_relay=False, kafka_max_message_bytes=64_000
    )
    await _create_schema(settings.database_url.get_secret_value())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=auth_headers()) as client:
            yield client, settings


def _version(record: dict[str, Any], recurrence_id: str, version: int) -> dict[str, Any]:
    record = copy.deepcopy(record) | {"recurrence_id": recurrence_id, "version": version}
    record["patient"]["age_years"] = 30 + version % 40  # each version has its own content
    return record


async def test_sixty_concurrent_versions_accept_only_increasing_versions_and_the_latest_wins(
    gateway: tuple[httpx.AsyncClient, GatewaySettings], example_record: dict[str, Any]
) -> None:
    client, settings = gateway
    versions = list(range(1, 61))
    random.Random(7).shuffle(versions)
    responses = await asyncio.gather(
        *(client.post("/v1/recurrences", json=_version(example_record, "race-1", v)) for v in versions)
    )
    statuses = {v: r.status_code for v, r in zip(versions, responses, strict=True)}
    assert set(statuses.values()) <= {202, 409}, statuses
    for r in responses:
        if r.status_code == 409:
            assert r.json()["type"].endswith("/stale-version"), r.text
    assert statuses[60] == 202

    engine = make_engine(settings.database_url.get_secret_value())
    async with make_session_factory(engine)() as session:
        stored = (
            await session.exec(
                select(RecordVersion.version).where(RecordVersion.recurrence_id == "race-1").order_by(col(RecordVersion.received_at))
            )
        ).all()
        events = (
            await session.exec(select(OutboxEvent.payload).order_by(col(OutboxEvent.created_at)))
        ).all()
    await engine.dispose()
    accepted = sorted(v for v, status in statuses.items() if status == 202)
    assert sorted(stored) == accepted
    assert list(stored) == sorted(stored), "a version was accepted after a newer one"
    assert len(events) == len(accepted)  # one recorded event per accepted version, none for the refused
    case = (await client.get("/v1/recurrences/race-1")).json()
    assert case["latest_version"] == 60 and case["versions"][-1]["superseded"] is False


async def test_a_record_too_large_for_the_broker_is_refused_before_anything_is_stored(
    databases, example_record: dict[str, Any], dev_profile, auth_headers  # noqa: ANN001
) -> None:
    settings = GatewaySettings(
        **dev_profile,
        database_url=databases.new_url("gateway"), run_consumer=False, run_relay=False, kafka_max_message_bytes=2048,
    )
    await _create_schema(settings.database_url.get_secret_value())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=auth_headers()
        ) as client:
            response = await client.post("/v1/recurrences", json=_version(example_record, "too-big-1", 1))
            assert response.status_code == 413
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "2048" in response.json()["detail"]
            assert (await client.get("/v1/recurrences/too-big-1")).status_code == 404
    engine = make_engine(settings.database_url.get_secret_value())
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM outbox"))).scalar_one() == 0
        assert (await connection.execute(text("SELECT count(*) FROM case_heads"))).scalar_one() == 0
    await engine.dispose()


async def _store_overdue_version(runtime: Runtime, record: dict[str, Any], recurrence_id: str) -> None:
    async with runtime.sessions() as session:
        await run_sync(
            session, service.accept_record, RecurrenceRecord.model_validate(_version(record, recurrence_id, 1)), correlation_id="c-1", max_event_bytes=1_000_000
        )
        await session.exec(
            update(RecordVersion).where(col(RecordVersion.recurrence_id) == recurrence_id).values(received_at=utc_now() - timedelta(hours=1))
        )
        await session.commit()


async def _outbox_rows(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return (await session.exec(select(func.count()).select_from(OutboxEvent))).one()


def _redrive_errors() -> float:
    return REGISTRY.get_sample_value("rnpc_background_errors_total", {"service": "gateway", "job": "redrive"}) or 0.0


async def test_the_redrive_loop_survives_a_database_error(databases, example_record: dict[str, Any]) -> None:  # noqa: ANN001
    settings = GatewaySettings(
        database_url=databases.new_url("gateway"), redrive_interval_s=0.05, redrive_after_s=60, run_consumer=False
    )
    engine = make_engine(settings.database_url.get_secret_value())
    runtime = Runtime(settings=settings, engine=engine, sessions=make_session_factory(engine))
    errors_before = _redrive_errors()
    loop = asyncio.create_task(redrive_loop(runtime))
    try:
        # No schema yet: every pass fails with a database error, and the loop keeps running.
        await eventually(lambda: _true(_redrive_errors() >= errors_before + 3))
        assert not loop.done()
        # The database is back, with an overdue case: the next pass re-drives it.
        await _create_schema(settings.database_url.get_secret_value())
        await _store_overdue_version(runtime, example_record, "redrive-survives-1")
        assert await eventually(lambda: _at_least(runtime, 2))  # the recorded event and its re-drive
        assert not loop.done()
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await engine.dispose()


async def test_a_manual_redrive_does_not_use_up_the_automatic_budget(databases, example_record: dict[str, Any]) -> None:  # noqa: ANN001
    settings = GatewaySettings(database_url=databases.new_url("gateway"), run_consumer=False)
    await _create_schema(settings.database_url.get_secret_value())
    engine = make_engine(settings.database_url.get_secret_value())
    runtime = Runtime(settings=settings, engine=engine, sessions=make_session_factory(engine))
    await _store_overdue_version(runtime, example_record, "manual-1")
    for _ in range(settings.redrive_max_attempts + 2):
        async with runtime.sessions() as session:
            redriven = await service.redrive_overdue(
                session, older_than=timedelta(0), max_attempts=settings.redrive_max_attempts, now=utc_now(), manual=True
            )
            await session.commit()
        assert redriven == [("manual-1", 1)]
    async with runtime.sessions() as session:
        automatic = await service.redrive_overdue(
            session, older_than=timedelta(0), max_attempts=settings.redrive_max_attempts, now=utc_now()
        )
        await session.commit()
        row = await run_sync(session, find_by_version, RecordVersion, "manual-1", 1)
    assert automatic == [("manual-1", 1)]
    assert row is not None and row.redrive_count == 1
    await engine.dispose()


async def test_an_inbound_record_with_an_over_long_correlation_id_is_accepted_under_a_fresh_one(
    databases, example_record: dict[str, Any]  # noqa: ANN001
) -> None:
    url = databases.new_url("inbound-corr")
    await _create_schema(url)
    units = Units(url)
    handler = inbound_handler(1_048_576)
    long_id = "urn:hospital:integration-engine:" + "c" * 60
    header = EventHeader(
        id=str(uuid.uuid4()), source="urn:hospital:engine", type=TOPIC_EHR_INBOUND,
        subject=example_record["recurrence_id"], time=utc_now(), correlationid=long_id,
    )

    def unit(connection):  # noqa: ANN001, ANN202 - as the consumer runs a handler: the event's id in the context
        token = correlation_id_var.set(header.correlationid)
        try:
            with Session(bind=connection) as session:
                handler(session, header, InboundMessage.model_validate(example_record))
                session.flush()
        finally:
            correlation_id_var.reset(token)

    def stored(connection):  # noqa: ANN001, ANN202
        with Session(bind=connection) as session:
            version = session.exec(select(RecordVersion)).one()
            audit = session.exec(select(AuditEntry)).one()
            outbox = session.exec(select(OutboxEvent)).one()
            return version.correlation_id, audit.correlation_id, CloudEvent.model_validate_json(outbox.payload).correlationid

    try:
        await units.run(unit)  # PostgreSQL refused the 92-character id (varchar(64)) before the fix
        version_id, audit_id, event_id = await units.run(stored)
    finally:
        await units.close()
    assert version_id == audit_id == event_id != long_id
    assert CORRELATION_ID_PATTERN.fullmatch(version_id)


async def _true(value: bool) -> bool:
    return value


async def _at_least(runtime: Runtime, rows: int) -> bool:
    return await _outbox_rows(runtime) >= rows


async def test_a_dead_letter_without_its_value_is_shown_on_the_case_with_where_the_original_is(databases) -> None:  # noqa: ANN001
    url = databases.new_url("gateway")
    await _create_schema(url)
    engine = make_engine(url)
    letter = DeadLetter(
        dlq_topic="rnpc.scores.computed.v1.dlq", key="case-big", value=b"", reason="PermanentError: unprocessable",
        error_type="PermanentError", original_topic="rnpc.scores.computed.v1", consumer_group="rnpc-recommendation",
        value_omitted="too_large", original_position="1:40",
    )
    try:
        async with make_session_factory(engine)() as session:
            await run_sync(session, service.note_dead_letter, letter)
            await session.commit()
            [notice] = (await session.exec(select(DeadLetterNotice))).all()
    finally:
        await engine.dispose()
    assert (notice.recurrence_id, notice.version, notice.stage) == ("case-big", None, "recommendation")
    assert notice.reason == (
        "PermanentError: unprocessable [event not copied to the DLQ (too_large); it is in rnpc.scores.computed.v1 at 1:40]"
    )
