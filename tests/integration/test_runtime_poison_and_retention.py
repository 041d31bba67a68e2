"""Poison-proof and bounded runtime, against the real embedded broker and a real database.

- a row too large for the broker is parked (reason kept, counted, announced on the DLQ) and
  every other key keeps flowing, including later rows of the same key;
- a handler that always fails for one event inside a poll batch dead-letters that event only:
  the others of the batch are handled exactly once;
- retention keeps the outbox and inbox row counts flat under a sustained load.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func
from sqlmodel import Session, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from rnpc_shared.contracts.events import CloudEvent, dlq_topic, new_event
from rnpc_shared.db import make_engine, make_session_factory, run_sync
from rnpc_shared.kafka.consumer import EventConsumer, Route, decode_dlq_headers
from rnpc_shared.kafka.outbox import OutboxRelay, Retention, add_to_outbox, event_json
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.producer import EventProducer, ensure_topics
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent, OutboxStatus, StageInput
from rnpc_shared.settings import ServiceSettings

pytestmark = pytest.mark.integration

MAX_MESSAGE_BYTES = 4096
MAX_ATTEMPTS = 3


class PoisonEffect(SQLModel, table=True):
    """A test-only effect table: one row per handled event."""

    __tablename__ = "poison_probe_effects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject: str
    value: int


class Probe(BaseModel):
    value: int


async def eventually(predicate: Callable[[], Awaitable[Any]], deadline_s: float = 30) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.05)  # poll interval under a deadline
    raise AssertionError("condition not met before the deadline")


class PoisonHarness:
    """A relay with a small broker limit and a consumer whose handler crashes on one value."""

    def __init__(self, broker: Any, databases: Any) -> None:
        self.topic = f"test.poison.{uuid.uuid4().hex[:8]}"
        self.settings = ServiceSettings(
            service_name="probe",
            **broker.connection.settings_fields(),
            kafka_fetch_max_wait_ms=20,
            consumer_group=f"poison-{uuid.uuid4().hex[:8]}",
            database_url=databases.new_url("poison"),
            retry_backoff_s=0.01,
            kafka_send_timeout_s=1.0,
        )
        self.engine = make_engine(self.settings.database_url.get_secret_value())
        self.sessions = make_session_factory(self.engine)
        self.producer = EventProducer(self.settings)
        self.crash_on = -1

    def handle(self, session: Session, event: CloudEvent, payload: Probe) -> None:
        if payload.value == self.crash_on:
            raise RuntimeError(f"handler bug on value {payload.value}")
        session.add(PoisonEffect(subject=event.subject, value=payload.value))

    async def __aenter__(self) -> PoisonHarness:
        await ensure_topics(KafkaConnection.from_settings(self.settings), [self.topic, dlq_topic(self.topic)])
        async with self.engine.begin() as connection:
            await connection.run_sync(
                SQLModel.metadata.create_all,
                tables=[PoisonEffect.__table__, OutboxEvent.__table__, InboxEvent.__table__, StageInput.__table__],
            )
        await self.producer.start()
        self.relay = OutboxRelay(
            service="probe",
            session_factory=self.sessions,
            producer=self.producer,
            poll_interval_s=0.2,
            batch_size=50,
            max_message_bytes=MAX_MESSAGE_BYTES,
            max_attempts=MAX_ATTEMPTS,
        )
        self.consumer = EventConsumer(
            settings=self.settings,
            routes={self.topic: Route(Probe, self.handle)},
            producer=self.producer,
            relay=self.relay,
        )
        self.tasks = [asyncio.create_task(self.relay.run()), asyncio.create_task(self.consumer.run())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.relay.stop()
        await asyncio.gather(*self.tasks)
        await self.producer.stop()
        await self.engine.dispose()

    async def effects(self, subject: str) -> list[int]:
        async with self.sessions() as session:
            rows = (await session.exec(select(PoisonEffect).where(PoisonEffect.subject == subject))).all()
        return sorted(row.value for row in rows)

    async def stage(self, subject: str, value: int, padding_bytes: int = 0, padding: str = "") -> CloudEvent:
        data = {"value": value, "padding": padding or "x" * padding_bytes}
        event = new_event(source="urn:test", type_=self.topic, subject=subject, data=data, correlation_id=None)
        async with self.sessions() as session:
            await run_sync(session, add_to_outbox, self.topic, event)
            await session.commit()
        return event

    async def outbox_status(self, event: CloudEvent) -> tuple[str, str | None]:
        async with self.sessions() as session:
            row = await session.get(OutboxEvent, uuid.UUID(event.id))
            assert row is not None
            return row.status, row.last_error

    async def count(self, table: type[OutboxEvent] | type[InboxEvent]) -> int:
        async with self.sessions() as session:
            return (await session.exec(select(func.count()).select_from(table))).one()

    async def dead_letters(self, count: int) -> list[Any]:
        return await self.messages(dlq_topic(self.topic), count)

    async def messages(self, topic: str, count: int) -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            **KafkaConnection.from_settings(self.settings).client_options(),
            group_id=f"dlq-reader-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        found: list[Any] = []
        try:
            async def collect() -> bool:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(records)
                return len(found) >= count

            await eventually(collect)
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def poison(broker, databases) -> AsyncIterator[PoisonHarness]:  # noqa: ANN001
    async with PoisonHarness(broker, databases) as instance:
        yield instance


def _parked_total(reason: str) -> float:
    return REGISTRY.get_sample_value("rnpc_outbox_parked_total", {"service": "probe", "reason": reason}) or 0.0


async def test_the_relay_sends_each_payload_as_the_exact_utf8_bytes_it_was_written_as(poison: PoisonHarness) -> None:
    """The relay reads payloads as bytes (`utf8_bytes`: CAST AS BLOB, convert_to) and sends them as
    read: non-ASCII text, backslashes and escaped quotes arrive as serialised, and are handled."""
    event = await poison.stage("case-utf8", 7, padding='é ≥ 鼻咽 \\ \\u00e9 "quoted" \u2028 end')
    poison.relay.notify()
    [message] = await poison.messages(poison.topic, 1)
    assert message.value == event_json(event) and message.key == b"case-utf8"
    assert json.loads(message.value)["data"]["padding"] == event.data["padding"]
    assert await eventually(lambda: poison.effects("case-utf8")) == [7]


async def test_a_row_too_large_is_parked_and_every_other_key_keeps_flowing(poison: PoisonHarness) -> None:
    parked_before = _parked_total("too_large")
    big = await poison.stage("case-big", 1, padding_bytes=2 * MAX_MESSAGE_BYTES)
    later_same_key = await poison.stage("case-big", 2)
    for n in range(5):
        await poison.stage(f"case-small-{n}", 10 + n)
    poison.relay.notify()

    for n in range(5):
        assert await eventually(lambda n=n: poison.effects(f"case-small-{n}")) == [10 + n]
    # Parked, not retried forever: the same key's later event goes out after it.
    assert await eventually(lambda: poison.effects("case-big")) == [2]
    status, reason = await poison.outbox_status(big)
    assert status == OutboxStatus.parked
    assert reason is not None and "exceeds the broker's message limit" in reason
    assert (await poison.outbox_status(later_same_key))[0] == OutboxStatus.published
    assert _parked_total("too_large") == parked_before + 1

    # Announced on the DLQ as a small notice naming the event, so the case can show it.
    [notice] = await poison.dead_letters(1)
    headers = decode_dlq_headers(notice.headers)
    assert headers["dlq.error_type"] == "OutboxParked" and "exceeds" in headers["dlq.reason"]
    assert headers["dlq.event_id"] == big.id and notice.key == b"case-big"
    assert len(notice.value) < MAX_MESSAGE_BYTES


async def test_a_row_that_always_fails_is_parked_after_its_attempts_and_other_keys_keep_flowing(
    poison: PoisonHarness,
) -> None:
    parked_before = _parked_total("failing")
    failing = new_event(source="urn:test", type_="t", subject="case-fails", data={"value": 1}, correlation_id=None)
    async with poison.sessions() as session:
        await run_sync(session, add_to_outbox, "not a valid topic name!", failing)  # the broker never takes it
        await session.commit()
    later_same_key = await poison.stage("case-fails", 7)
    for n in range(3):
        await poison.stage(f"case-ok-{n}", n)
    poison.relay.notify()

    for n in range(3):
        assert await eventually(lambda n=n: poison.effects(f"case-ok-{n}")) == [n]
    # The same key waits behind its failing row until that row is parked, then flows.
    assert await eventually(lambda: poison.effects("case-fails"), deadline_s=60) == [7]
    status, reason = await poison.outbox_status(failing)
    assert status == OutboxStatus.parked and reason
    assert (await poison.outbox_status(later_same_key))[0] == OutboxStatus.published
    async with poison.sessions() as session:
        row = await session.get(OutboxEvent, uuid.UUID(failing.id))
        assert row is not None and row.attempts == MAX_ATTEMPTS
    assert _parked_total("failing") == parked_before + 1


async def test_an_event_that_always_fails_inside_a_batch_leaves_the_others_handled_exactly_once(
    poison: PoisonHarness,
) -> None:
    poison.crash_on = 99
    # Staged in one transaction, so the consumer reads them in one poll batch.
    async with poison.sessions() as session:
        for value in (1, 2, 99, 3, 4):
            event = new_event(source="urn:test", type_=poison.topic, subject="case-batch", data={"value": value}, correlation_id=None)
            await run_sync(session, add_to_outbox, poison.topic, event)
        await session.commit()
    poison.relay.notify()

    assert await eventually(lambda: (e := poison.effects("case-batch")) and e) is not None
    assert await eventually(lambda: _values_when(poison, "case-batch", 4)) == [1, 2, 3, 4]
    [letter] = await poison.dead_letters(1)
    headers = decode_dlq_headers(letter.headers)
    assert headers["dlq.error_type"] == "RuntimeError" and "value 99" in headers["dlq.reason"]
    assert json.loads(letter.value)["data"]["value"] == 99
    assert await poison.count(InboxEvent) == 4  # the dead-lettered one has no effect and no inbox row


async def _values_when(harness: PoisonHarness, subject: str, size: int) -> list[int] | None:
    values = await harness.effects(subject)
    return values if len(values) >= size else None


async def test_retention_keeps_outbox_and_inbox_row_counts_flat_under_sustained_load(poison: PoisonHarness) -> None:
    keep_nothing_old = Retention(outbox_s=0.0, inbox_s=0.0, batch_rows=1000)
    round_size = 20
    counts = []
    for round_number in range(4):
        subject = f"case-load-{round_number}"
        for n in range(round_size):
            await poison.stage(subject, n)
        poison.relay.notify()
        assert await eventually(lambda s=subject: _values_when(poison, s, round_size)) == list(range(round_size))
        assert await eventually(lambda: _all_published(poison))
        await poison.relay.apply_retention(keep_nothing_old)
        await poison.relay.refresh_gauges()
        counts.append((await poison.count(OutboxEvent), await poison.count(InboxEvent)))
    # Every published outbox row and every processed inbox row past the retention window is gone.
    assert counts == [(0, 0)] * 4
    assert REGISTRY.get_sample_value("rnpc_table_rows", {"service": "probe", "table": "outbox"}) == 0
    deleted = REGISTRY.get_sample_value("rnpc_retention_deleted_total", {"service": "probe", "table": "inbox"})
    assert deleted is not None and deleted >= 4 * round_size


async def test_retention_keeps_pending_rows_and_rows_inside_the_window(poison: PoisonHarness) -> None:
    event = await poison.stage("case-keep", 1)
    await poison.relay.apply_retention(Retention(outbox_s=0.0, inbox_s=0.0))
    assert (await poison.outbox_status(event))[0] in {OutboxStatus.pending, OutboxStatus.published}
    poison.relay.notify()
    assert await eventually(lambda: poison.effects("case-keep")) == [1]
    await poison.relay.apply_retention(Retention(outbox_s=3600.0, inbox_s=3600.0))
    assert await poison.count(OutboxEvent) >= 1 and await poison.count(InboxEvent) == 1


async def _all_published(harness: PoisonHarness) -> bool:
    async with harness.sessions() as session:
        pending = (
            await session.exec(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == OutboxStatus.pending)
            )
        ).one()
    return pending == 0


async def _relay_on_runtime_tables(
    settings: ServiceSettings,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], OutboxRelay]:
    """(engine, sessions, relay) of a service's runtime tables (outbox, inbox, stage inputs), created
    fresh: for the relay's housekeeping (gauges, readiness), which needs no broker."""
    engine = make_engine(settings.database_url.get_secret_value())
    async with engine.begin() as connection:
        await connection.run_sync(
            SQLModel.metadata.create_all, tables=[OutboxEvent.__table__, InboxEvent.__table__, StageInput.__table__]
        )
    sessions = make_session_factory(engine)
    relay = OutboxRelay(
        service=settings.service_name, session_factory=sessions, producer=EventProducer(settings), poll_interval_s=1, batch_size=10
    )
    return engine, sessions, relay


async def test_readyz_reports_a_stuck_outbox(databases, dev_profile) -> None:  # noqa: ANN001
    from rnpc_shared.db import utc_now
    from rnpc_shared.service import Runtime

    settings = ServiceSettings(
        **dev_profile, service_name="probe-ready", database_url=databases.new_url("ready"), outbox_stuck_after_s=60
    )
    engine, sessions, relay = await _relay_on_runtime_tables(settings)
    runtime = Runtime(settings=settings, engine=engine, sessions=sessions, relay=relay)
    await relay.refresh_gauges()
    assert (await runtime.ready())["outbox"] is True
    async with sessions() as session:  # committed ten minutes ago and still not published
        session.add(OutboxEvent(id=uuid.uuid4(), topic="t", key="k", payload="{}", created_at=utc_now() - timedelta(minutes=10)))
        await session.commit()
    await relay.refresh_gauges()
    assert (await runtime.ready())["outbox"] is False
    await engine.dispose()


async def test_table_gauges_count_outbox_rows_and_payload_bytes(databases, dev_profile) -> None:  # noqa: ANN001
    """The bytes gauge is the UTF-8 size of the payloads written, summed without reading them."""
    settings = ServiceSettings(**dev_profile, service_name="probe-bytes", database_url=databases.new_url("bytes"))
    engine, sessions, relay = await _relay_on_runtime_tables(settings)
    events = [new_event(source="probe", type_="t", subject=f"case-{i}", data={"note": "é" * i}, correlation_id=None) for i in (1, 500)]
    async with sessions() as session:
        for event in events:
            await run_sync(session, add_to_outbox, "rnpc.probe.v1", event)
        await session.commit()
    await relay.refresh_gauges()
    sample = lambda name: REGISTRY.get_sample_value(name, {"service": "probe-bytes", "table": "outbox"})  # noqa: E731
    assert sample("rnpc_table_rows") == 2
    assert sample("rnpc_table_bytes") == sum(len(event.model_dump_json().encode()) for event in events)
    await engine.dispose()
