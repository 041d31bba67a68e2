"""The shared Kafka runtime against the real embedded broker and a real database.

Invariants (as Kafka's own system tests phrase them): every accepted event has exactly one
effect; redeliveries are no-ops; invalid events reach the DLQ with the reason and the consumer
keeps going.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Field, Session, SQLModel, select

from rnpc_shared.contracts.events import EVENT_ID_MAX_LENGTH, CloudEvent, dlq_topic, new_event
from rnpc_shared.db import make_engine, make_session_factory, run_sync
from rnpc_shared.kafka.consumer import (
    DeadLetter,
    DeadLetterRoute,
    EventConsumer,
    PermanentError,
    Route,
    dead_letter_key,
    decode_dlq_headers,
)
from rnpc_shared.kafka.outbox import OutboxRelay, add_to_outbox, message_size_bytes
from rnpc_shared.kafka.producer import EventProducer, ensure_topics
from rnpc_shared.kafka.replay import replay
from rnpc_shared.kafka.tables import InboxEvent, OutboxEvent
from rnpc_shared.settings import ServiceSettings

pytestmark = pytest.mark.integration

SMALL_LIMIT = 4096


class ProbeEffect(SQLModel, table=True):
    """A test-only effect table: one row per handled event."""

    __tablename__ = "probe_effects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject: str
    value: int


class ProbePayload(BaseModel):
    value: int


async def eventually(predicate: Callable[[], Awaitable[Any]], deadline_s: float = 30) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.05)  # poll interval under a deadline
    raise AssertionError("condition not met before the deadline")


class Harness:
    def __init__(self, broker, databases, *, observe_dlq: bool = False, max_message_bytes: int | None = None) -> None:  # noqa: ANN001
        self.observe_dlq = observe_dlq
        self.observed: list[DeadLetter] = []  # dead letters seen by the DLQ observer, when there is one
        self.topic = f"test.probe.{uuid.uuid4().hex[:8]}"
        self.settings = ServiceSettings(
            **broker.connection.settings_fields(),  # under ACLs: the admin (any topic, any group)
            service_name="probe",
            kafka_fetch_max_wait_ms=20,
            consumer_group=f"probe-{uuid.uuid4().hex[:8]}",
            database_url=databases.new_url("probe"),
            retry_backoff_s=0.01,
            # Smaller than the broker's limit, as a producer's can be: an original may then be too
            # large for its dead-letter copy.
            **({"kafka_max_message_bytes": max_message_bytes} if max_message_bytes is not None else {}),
        )
        self.connection = broker.connection
        self.engine = make_engine(self.settings.database_url.get_secret_value())
        self.sessions = make_session_factory(self.engine)
        self.producer = EventProducer(self.settings)
        self.fail_permanently: set[int] = set()

    def handle(self, session: Session, event: CloudEvent, payload: ProbePayload) -> None:
        if payload.value in self.fail_permanently:
            raise PermanentError(f"value {payload.value} is unprocessable")
        session.add(ProbeEffect(subject=event.subject, value=payload.value))

    async def __aenter__(self) -> Harness:
        await ensure_topics(self.connection, [self.topic, dlq_topic(self.topic)])
        async with self.engine.begin() as connection:
            await connection.run_sync(
                SQLModel.metadata.create_all,
                tables=[ProbeEffect.__table__, OutboxEvent.__table__, InboxEvent.__table__],
            )
        await self.producer.start()
        self.relay = OutboxRelay(service="probe", session_factory=self.sessions, producer=self.producer, poll_interval_s=0.2, batch_size=10)
        self.consumer = EventConsumer(
            settings=self.settings,
            routes={
                self.topic: Route(ProbePayload, self.handle),
                # As the gateway observes the pipeline's DLQs (its cases' failed stages).
                **({dlq_topic(self.topic): DeadLetterRoute(lambda _session, letter: self.observed.append(letter))}
                   if self.observe_dlq else {}),
            },
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
            rows = (await session.exec(select(ProbeEffect).where(ProbeEffect.subject == subject))).all()
        return sorted(row.value for row in rows)

    async def publish_via_outbox(self, subject: str, value: int) -> CloudEvent:
        event = new_event(source="urn:test", type_=self.topic, subject=subject, data={"value": value}, correlation_id=None)
        async with self.sessions() as session:
            await run_sync(session, add_to_outbox, self.topic, event)
            await session.commit()
        self.relay.notify()
        return event

    async def publish_raw(self, subject: str, value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        await self.producer.send(self.topic, key=subject, value=value, headers=headers or [])

    async def publish_large(self, subject: str, value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        """Sent by another producer, limited only by the broker (1 MiB), not by this service's limit."""
        producer = AIOKafkaProducer(**self.connection.client_options(), acks="all", enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(self.topic, key=subject.encode(), value=value, headers=headers or [])
        finally:
            await producer.stop()

    async def dead_letters(self, count: int) -> list[Any]:
        consumer = AIOKafkaConsumer(
            dlq_topic(self.topic),
            **self.connection.client_options(),
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
async def harness(broker, databases) -> AsyncIterator[Harness]:  # noqa: ANN001
    async with Harness(broker, databases) as instance:
        yield instance


@pytest.fixture
async def small_limit(broker, databases) -> AsyncIterator[Harness]:  # noqa: ANN001
    """A harness whose producer limit (4 KiB) is below the broker's, observing its topic's DLQ."""
    async with Harness(broker, databases, observe_dlq=True, max_message_bytes=SMALL_LIMIT) as instance:
        yield instance


@pytest.fixture
async def observing(broker, databases) -> AsyncIterator[Harness]:  # noqa: ANN001
    """A harness whose consumer also observes its topic's DLQ (a DeadLetterRoute)."""
    async with Harness(broker, databases, observe_dlq=True) as instance:
        yield instance


async def test_outbox_event_is_published_and_handled_exactly_once(harness: Harness) -> None:
    event = await harness.publish_via_outbox("case-a", 7)
    assert await eventually(lambda: harness.effects("case-a")) == [7]

    # Redeliver the very same event (as after a crash before the offset commit): no second effect.
    await harness.publish_raw("case-a", event.model_dump_json().encode())
    await harness.publish_via_outbox("case-a", 8)  # a later event proves the duplicate was passed
    assert await eventually(lambda: _has(harness, "case-a", 8)) == [7, 8]
    async with harness.sessions() as session:
        pending = (await session.exec(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None)))).one()  # type: ignore[union-attr]
        inbox = (await session.exec(select(func.count()).select_from(InboxEvent))).one()
    assert pending == 0
    assert inbox == 2


async def _has(harness: Harness, subject: str, value: int) -> list[int] | None:
    effects = await harness.effects(subject)
    return effects if value in effects else None


async def test_invalid_events_are_dead_lettered_with_the_reason_and_the_consumer_goes_on(harness: Harness) -> None:
    await harness.publish_raw("case-b", b"{not json")
    bad_schema = new_event(source="urn:test", type_="t", subject="case-b", data={"value": "NaN-ish"}, correlation_id=None)
    await harness.publish_raw("case-b", bad_schema.model_dump_json().encode())
    harness.fail_permanently.add(13)
    await harness.publish_via_outbox("case-b", 13)
    await harness.publish_via_outbox("case-b", 1)

    assert await eventually(lambda: harness.effects("case-b")) == [1]
    letters = await harness.dead_letters(3)
    reasons = [decode_dlq_headers(record.headers) for record in letters]
    assert [r["dlq.error_type"] for r in reasons] == ["ValidationError", "ValidationError", "PermanentError"]
    assert all(r["dlq.original_topic"] == harness.topic and r["dlq.reason"] for r in reasons)
    assert letters[0].value == b"{not json"  # the original message, untouched
    assert "value 13 is unprocessable" in reasons[2]["dlq.reason"]


async def test_dlq_replay_sends_fixed_messages_back_through_the_consumer(harness: Harness) -> None:
    harness.fail_permanently.add(21)
    await harness.publish_via_outbox("case-c", 21)
    await harness.dead_letters(1)
    assert await harness.effects("case-c") == []

    harness.fail_permanently.clear()  # "the cause is fixed"
    group = f"replay-{uuid.uuid4().hex[:8]}"
    assert (await replay(harness.connection, dlq_topic(harness.topic), group_id=group)).replayed == 1
    assert await eventually(lambda: harness.effects("case-c")) == [21]
    # The replay group remembers its position: a second run re-sends nothing.
    assert (await replay(harness.connection, dlq_topic(harness.topic), group_id=group)).replayed == 0


async def test_an_over_long_or_malformed_event_id_is_dead_lettered_as_invalid_not_a_database_error(harness: Harness) -> None:
    """The event id is the inbox key (varchar(255)): PostgreSQL would refuse a longer one, or a NUL,
    at the insert (after the handler's retries); the envelope refuses them at parse time instead."""
    longest = new_event(source="urn:test", type_="t", subject="case-id", data={"value": 1}, correlation_id=None)
    longest.id = "i" * 255
    too_long = longest.model_copy(update={"id": "i" * 256})
    with_nul = longest.model_copy(update={"id": "id\x00with-nul"})
    for event in (too_long, with_nul, longest):
        await harness.publish_raw("case-id", event.model_dump_json().encode())

    assert await eventually(lambda: harness.effects("case-id")) == [1]  # the longest allowed id is stored
    letters = await harness.dead_letters(2)
    reasons = [decode_dlq_headers(record.headers) for record in letters]
    assert [r["dlq.error_type"] for r in reasons] == ["ValidationError", "ValidationError"]
    assert "at most 255 characters" in reasons[0]["dlq.reason"]
    assert "should match pattern" in reasons[1]["dlq.reason"]
    assert all(r["dlq.attempts"] == "1" for r in reasons)  # refused at parse time, not after retries


async def test_a_dead_letter_with_null_or_non_utf8_headers_is_observed_and_the_consumer_goes_on(observing: Harness) -> None:
    """Kafka allows a null header value, and a dead letter carries the original message's headers:
    reading them used to raise outside every guard, killing the consumer task on each restart."""
    await observing.publish_raw("case-h", b"not json", headers=[("dlq.trace", None), ("dlq.note", b"\xff\xfe"), ("trace", None)])
    await observing.publish_via_outbox("case-h", 5)  # a later event proves the consumer goes on

    assert await eventually(lambda: observing.effects("case-h")) == [5]
    await eventually(lambda: _true(bool(observing.observed)))
    [letter] = {(letter.reason, letter.error_type, letter.original_topic): letter for letter in observing.observed}.values()
    assert letter.error_type == "ValidationError" and letter.original_topic == observing.topic
    assert all(not task.done() for task in observing.tasks)
    headers = decode_dlq_headers([("dlq.trace", None), ("dlq.note", b"\xff\xfe"), ("dlq.reason", b"r"), ("other", b"x")])
    assert headers == {"dlq.note": "\ufffd\ufffd", "dlq.reason": "r"}


async def test_an_event_too_large_for_its_dead_letter_copy_is_dead_lettered_without_its_value_and_the_consumer_goes_on(
    small_limit: Harness,
) -> None:
    """The broker accepts originals up to its own limit; a copy that cannot be sent failed on every
    attempt (MessageSizeTooLargeError → retry → seek back): the partition was blocked for good."""
    harness = small_limit
    harness.fail_permanently.update({31, 32})
    trace = [("trace", b"t" * 3000)]  # header bulk: the copy fits only without it
    fits_without_headers = _event("case-big", 32, padding=SMALL_LIMIT - 1500)
    too_large = _event("case-big", 31, padding=SMALL_LIMIT * 2)
    await harness.publish_large("case-big", fits_without_headers, headers=[("content-type", b"application/cloudevents+json"), *trace])
    await harness.publish_large("case-big", too_large, headers=trace)
    await harness.publish_via_outbox("case-big", 1)  # the next event on the same key (partition)

    assert await eventually(lambda: harness.effects("case-big")) == [1]  # not stuck behind the big one
    kept, omitted = await harness.dead_letters(2)
    for letter in (kept, omitted):
        assert message_size_bytes(letter.value, letter.key.decode(), letter.headers) <= SMALL_LIMIT
    kept_headers = decode_dlq_headers(kept.headers)
    assert kept.value == fits_without_headers
    assert "trace" not in dict(kept.headers) and kept_headers["dlq.headers_omitted"] == "2"
    assert "dlq.value_omitted" not in kept_headers and "value 32 is unprocessable" in kept_headers["dlq.reason"]

    headers = decode_dlq_headers(omitted.headers)
    assert omitted.value == b""
    assert headers["dlq.value_omitted"] == "too_large"
    assert headers["dlq.value_bytes"] == str(len(too_large))
    assert headers["dlq.value_sha256"] == hashlib.sha256(too_large).hexdigest()
    assert headers["dlq.error_type"] == "PermanentError" and "value 31 is unprocessable" in headers["dlq.reason"]
    assert headers["dlq.original_topic"] == harness.topic
    assert (headers["dlq.original_partition"], headers["dlq.original_offset"]) == (str(kept.partition), "1")

    # The DLQ observer (the gateway's route) reads it: no value, and where the original is.
    await eventually(lambda: _true(len(harness.observed) >= 2))
    observed = {letter.value_omitted: letter for letter in harness.observed}
    assert observed[None].value == fits_without_headers
    assert observed["too_large"].value == b"" and observed["too_large"].original_data() is None
    assert observed["too_large"].original_position == f"{kept.partition}:1"
    assert all(not task.done() for task in harness.tasks)

    # The replay tool re-sends the one with its value and skips the other, saying where it is.
    report = await replay(harness.connection, dlq_topic(harness.topic), group_id=f"replay-{uuid.uuid4().hex[:8]}", dry_run=True)
    assert (report.examined, report.replayed, report.skipped) == (2, 1, 1)
    assert report.skipped_by_reason == {"value omitted": 1}
    [line] = report.skipped_messages
    assert f"the original is in {harness.topic} at {kept.partition}:1 until that topic's retention" in line
    assert f"{len(too_large)} bytes" in line


def _event(subject: str, value: int, *, padding: int) -> bytes:
    """A valid probe event padded with a field its reader ignores, `padding` characters long."""
    data = {"value": value, "padding": "p" * padding}
    return new_event(source="urn:test", type_="t", subject=subject, data=data, correlation_id=None).model_dump_json().encode()


def _dead_letter_record(topic: str, offset: int, value: bytes, failed_at: bytes) -> ConsumerRecord:
    headers = [("trace", None), ("dlq.consumer_group", b"rnpc-scoring"), ("dlq.failed_at", failed_at)]
    return ConsumerRecord(topic, 0, offset, 0, 0, b"case-1", value, None, 6, len(value), headers)


def test_a_dead_letter_is_observed_once_by_its_content_not_only_its_offset() -> None:
    """An embedded broker restarts its offsets at 0: a new dead letter at an offset observed within
    the inbox's retention used to be skipped as a redelivery of the old one."""
    dlq = "rnpc.scores.computed.v1.dlq"
    first = dead_letter_key(_dead_letter_record(dlq, 0, b'{"id": "e-1"}', b"2025-01-01T00:00:00+00:00"))
    assert first == dead_letter_key(_dead_letter_record(dlq, 0, b'{"id": "e-1"}', b"2025-01-01T00:00:00+00:00"))  # redelivery
    assert first != dead_letter_key(_dead_letter_record(dlq, 0, b'{"id": "e-2"}', b"2025-01-01T00:00:00+00:00"))
    assert first != dead_letter_key(_dead_letter_record(dlq, 0, b'{"id": "e-1"}', b"2025-01-02T00:00:00+00:00"))
    assert first != dead_letter_key(_dead_letter_record("rnpc.evidence.matched.v2.dlq", 0, b'{"id": "e-1"}', b"2025-01-01T00:00:00+00:00"))
    assert first != dead_letter_key(_dead_letter_record(dlq, 1, b'{"id": "e-1"}', b"2025-01-01T00:00:00+00:00"))
    long_topic = dead_letter_key(_dead_letter_record("t" * 249, 2**62, b"x" * 10_000, b"f"))
    assert len(long_topic) <= EVENT_ID_MAX_LENGTH


async def _true(value: bool) -> bool:
    return value


async def test_alerting_counters_are_exported_at_zero_before_the_first_event(broker, databases) -> None:  # noqa: ANN001
    """A labelled counter created by its first increment first shows up at 1, which increase()
    cannot see: the first parked event or forged result would page nobody. The consumer and the
    relay export their label sets at 0 when they start."""
    from prometheus_client import REGISTRY

    async with Harness(broker, databases) as harness:
        per_topic = {"service": "probe", "topic": harness.topic}
        for name, labels in [
            ("rnpc_provenance_rejected_total", per_topic),
            ("rnpc_dlq_messages_total", per_topic),
            ("rnpc_events_consumed_total", per_topic | {"outcome": "retry"}),
            ("rnpc_outbox_parked_total", {"service": "probe", "reason": "too_large"}),
            ("rnpc_outbox_parked_total", {"service": "probe", "reason": "failing"}),
        ]:
            assert REGISTRY.get_sample_value(name, labels) is not None, (name, labels)
