"""Consumer loop: poll a batch → parse each message once → one DB transaction for the batch
(inbox rows + effects + outbox rows) → one offset commit for the batch.

The batch's transaction is one unit of work on the consumer's own connection (`Units`): handlers
are plain functions of a sync ORM `Session`, and the whole batch is one hop off the event loop
(on SQLite, aiosqlite hopped threads for every statement, fetch and commit).

At-least-once delivery with idempotent effects:
- offsets are committed explicitly (`{tp: offset + 1}`) only after the DB commit;
- the inbox row makes a redelivered event a no-op;
- an invalid or unprocessable event goes to `<topic>.dlq` with the reason, then its offset is
  committed and the consumer moves on; a transient fault (DB or broker down) is retried and the
  offset is not committed, so the event is seen again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session

from rnpc_shared import metrics
from rnpc_shared.contracts.events import EventHeader, dlq_topic, read_event
from rnpc_shared.db import Units, utc_now
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.outbox import OutboxRelay, message_size_bytes
from rnpc_shared.kafka.producer import EventProducer
from rnpc_shared.kafka.tables import INBOX_TABLE, InboxEvent
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Faults worth retrying without dead-lettering: the event is fine, the infrastructure is not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    KafkaError,
)
# PostgreSQL's verdicts on concurrent transactions (serialization failure, deadlock detected): the
# transaction was chosen to give way, e.g. to another replica's batch joining the same case.
TRANSACTION_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """Worth retrying as it is: the infrastructure failed, or the database asked for a retry."""
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in TRANSACTION_CONFLICT_SQLSTATES:
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


class PermanentError(Exception):
    """A handler's verdict that this event can never be processed (goes to the DLQ)."""


class ProvenanceError(PermanentError):
    """The event does not match the stored record version or the stage order: dead-lettered
    with reason `provenance` (a forged or misrouted result never becomes a case's result)."""


LAG_EXPORT_INTERVAL_S = 5.0


class Outcome(StrEnum):
    success = "success"
    duplicate = "duplicate"
    retry = "retry"
    dlq = "dlq"


PayloadT = TypeVar("PayloadT", bound=BaseModel)


@dataclass(frozen=True)
class Route(Generic[PayloadT]):
    """How to handle one topic: the payload model and the effect, a plain function run inside the
    batch's transaction (it adds rows to the session; the consumer flushes and commits)."""

    payload_model: type[PayloadT]
    handle: Callable[[Session, EventHeader, PayloadT], None]


@dataclass(frozen=True)
class DeadLetter:
    """A message read from a `.dlq` topic: the original key/value and the reason headers."""

    dlq_topic: str
    key: str
    value: bytes
    reason: str
    error_type: str
    original_topic: str
    consumer_group: str
    # Set (e.g. "too_large") when the copy carries no value: the original stays in its topic at
    # `original_position` until that topic's retention (see `_dead_letter_copy`).
    value_omitted: str | None = None
    original_position: str | None = None  # "partition:offset" in original_topic, when recorded

    def original_data(self) -> dict[str, Any] | None:
        """The original CloudEvent's data when it is still readable JSON, else None."""
        try:
            data = json.loads(self.value).get("data")
        except (ValueError, AttributeError):
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DeadLetterRoute:
    """Observe a dead-letter topic (e.g. to show a case's failed stage); each message once (see
    `dead_letter_key`)."""

    handle: Callable[[Session, DeadLetter], None]


class _RebalanceCounter(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped (Any)
    def __init__(self, service: str) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Their lag is the new owner's to export now: a value left here would stay frozen (and
        # keep RnpcConsumerLagHigh firing under max by partition) after the backlog is gone.
        for tp in revoked:
            try:
                metrics.CONSUMER_LAG.remove(self._service, tp.topic, str(tp.partition))
            except KeyError:  # never exported
                pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels(self._service).inc()


@dataclass
class _Item:
    """One polled message, parsed once: either ready for its effect or already dead-lettered."""

    record: ConsumerRecord
    event_id: str
    correlation_id: str | None
    effect: Callable[[Session], None] | None  # None: invalid, goes to the DLQ
    error: BaseException | None = None


class EventConsumer:
    def __init__(
        self,
        *,
        settings: ServiceSettings,
        routes: dict[str, Route[Any] | DeadLetterRoute],
        producer: EventProducer,
        relay: OutboxRelay | None,
    ) -> None:
        self._settings = settings
        self._service = settings.service_name
        self._routes = routes
        service, topics = self._service, list(routes)
        metrics.at_zero(metrics.EVENTS_CONSUMED, *((service, topic, outcome.value) for topic in topics for outcome in Outcome))
        metrics.at_zero(metrics.DLQ_MESSAGES, *((service, topic) for topic in topics))
        metrics.at_zero(metrics.PROVENANCE_REJECTED, *((service, topic) for topic in topics))
        metrics.at_zero(metrics.COMMIT_FAILURES, (service,))
        metrics.at_zero(metrics.REBALANCES, (service,))
        # Its own connection: one writer, each poll batch one unit of work (see the module doc).
        self._units = Units(settings.database_url.get_secret_value(), threads=1, name=f"{self._service}-consumer")
        self._producer = producer
        self._relay = relay
        self._stopping = asyncio.Event()
        self.last_poll_monotonic: float | None = None
        self.started_monotonic = time.monotonic()
        self._lag_exported_monotonic = 0.0

    @property
    def group_id(self) -> str:
        return self._settings.group_id

    def stop(self) -> None:
        self._stopping.set()

    def polled_recently(self) -> bool:
        reference = self.last_poll_monotonic or self.started_monotonic
        return time.monotonic() - reference < self._settings.liveness_poll_stale_s

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **KafkaConnection.from_settings(self._settings).client_options(),
            group_id=self.group_id,
            client_id=f"rnpc-{self._service}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
            request_timeout_ms=self._settings.kafka_request_timeout_ms,
            max_partition_fetch_bytes=max(self._settings.kafka_max_message_bytes, 1_048_576),
        )
        consumer.subscribe(list(self._routes), listener=_RebalanceCounter(self._service))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self._settings.consumer_max_batch)
                self._mark_polled()
                if batches and not self._stopping.is_set():
                    await self._handle_poll(consumer, batches)
                await self._export_lag(consumer)
        finally:
            # Graceful: leave the group so partitions move to another replica at once.
            await consumer.stop()
            await self._units.close()

    async def _handle_poll(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
        """One poll batch: parse each message once, then one transaction and one offset commit.

        A batch that cannot commit as a whole (a poison event, a handler error, a rebalance
        race) falls back to one transaction per event, so no other event is lost or doubled.
        """
        started = time.perf_counter()
        items: dict[TopicPartition, list[_Item]] = {tp: [self._parse(r) for r in records] for tp, records in batches.items()}
        good = [item for tp_items in items.values() for item in tp_items if item.effect is not None]
        if all(item.effect is not None for tp_items in items.values() for item in tp_items):
            try:
                outcomes = await self._apply_batch(good)
            except Exception as exc:  # noqa: BLE001 - any failure: retry the events one by one
                log.info("batch fell back to per-event processing", extra={"outcome": type(exc).__name__})
            else:
                elapsed = time.perf_counter() - started
                for item in good:
                    metrics.EVENTS_CONSUMED.labels(self._service, item.record.topic, outcomes[item.event_id]).inc()
                    metrics.EVENT_PROCESSING.labels(self._service, item.record.topic).observe(elapsed / len(good))
                await self._commit(consumer, {tp: tp_items[-1].record.offset + 1 for tp, tp_items in items.items()})
                return
        for tp, tp_items in items.items():
            for item in tp_items:
                if self._stopping.is_set():
                    return
                outcome = await self._process(item)
                if outcome is Outcome.retry:
                    # Not committed: read it again after a pause, in order.
                    self._seek(consumer, tp, item.record.offset)
                    await self._pause()
                    break
                await self._commit(consumer, {tp: item.record.offset + 1})

    def _mark_polled(self) -> None:
        self.last_poll_monotonic = time.monotonic()
        metrics.CONSUMER_LAST_POLL.labels(self._service).set(time.time())

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(self._settings.retry_backoff_s, 0.05) * 5)
        except TimeoutError:
            pass

    def _seek(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            consumer.seek(tp, offset)
        except (IllegalStateError, AssertionError):
            # Revoked by a rebalance meanwhile: its new owner starts from the committed offset.
            log.info("partition no longer assigned; not seeking", extra={"topic": tp.topic, "partition": tp.partition})

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return  # all revoked by a rebalance: redelivered to the new owner, the inbox dedupes
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError):
            # The events will be redelivered; the inbox makes that harmless.
            metrics.COMMIT_FAILURES.labels(self._service).inc()
            log.warning("offset commit failed", extra={"topic": ",".join(sorted({tp.topic for tp in offsets}))})

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._lag_exported_monotonic < LAG_EXPORT_INTERVAL_S:
            return
        self._lag_exported_monotonic = now
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked meanwhile
            metrics.CONSUMER_LAG.labels(self._service, tp.topic, str(tp.partition)).set(
                max(highwater - position, 0)
            )

    def _parse(self, record: ConsumerRecord) -> _Item:
        """Never raises: whatever a message holds, it becomes an item (an unreadable one is
        dead-lettered, or for a DLQ left in place), so no message can stop the consumer loop."""
        route = self._routes[record.topic]
        if isinstance(route, DeadLetterRoute):
            try:
                letter = _read_dead_letter(record)
            except Exception as exc:  # noqa: BLE001 - any unreadable dead letter is skipped, never fatal
                return _Item(record, "", None, None, exc)
            return _Item(record, dead_letter_key(record), None, lambda session: route.handle(session, letter))
        try:
            # Readers tolerate fields added by newer producers, at any depth (rolling deploys).
            event, payload = read_event(route.payload_model, record.value)
        except Exception as exc:  # noqa: BLE001 - ValidationError mostly: any failure to read is the event's
            return _Item(record, "", None, None, exc)
        return _Item(record, event.id, event.correlationid, lambda session: route.handle(session, event, payload))

    async def _apply_batch(self, items: list[_Item]) -> dict[str, Outcome]:
        """Every event of the poll in one transaction: inbox rows (one bulk insert) and effects."""
        outcomes = await self._units.run(_apply_batch_unit, self.group_id, items)
        self._after_db_commit()
        return outcomes

    async def _process(self, item: _Item) -> Outcome:
        """One event in its own transaction, with retries; the fallback path of a poll batch."""
        record = item.record
        if item.effect is None:
            return await self._dead_letter(record, item.error or ValueError("unreadable"), attempts=1)
        started = time.perf_counter()
        event_id = item.event_id
        token = correlation_id_var.set(item.correlation_id)
        try:
            for attempt in range(1, self._settings.handler_max_attempts + 1):
                try:
                    outcome = await self._apply(item)
                except PermanentError as exc:
                    return await self._dead_letter(record, exc, attempts=attempt)
                except Exception as exc:
                    if is_transient(exc):
                        log.warning("transient failure, will retry", extra={"event_id": event_id}, exc_info=exc)
                        if attempt == self._settings.handler_max_attempts:
                            metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.retry).inc()
                            return Outcome.retry
                    else:  # a bug or bad data the schema did not catch
                        log.exception("handler failed", extra={"event_id": event_id})
                        if attempt == self._settings.handler_max_attempts:
                            return await self._dead_letter(record, exc, attempts=attempt)
                else:
                    metrics.EVENTS_CONSUMED.labels(self._service, record.topic, outcome).inc()
                    metrics.EVENT_PROCESSING.labels(self._service, record.topic).observe(
                        time.perf_counter() - started
                    )
                    return outcome
                await asyncio.sleep(self._settings.retry_backoff_s * attempt)  # backoff, not synchronisation
            return Outcome.retry
        finally:
            correlation_id_var.reset(token)

    async def _apply(self, item: _Item) -> Outcome:
        try:
            outcome = await self._units.run(_apply_unit, self.group_id, item)
        except IntegrityError:
            # Another member of the group committed the same event first (rebalance race).
            if await self._units.run(_seen, self.group_id, item.event_id):
                return Outcome.duplicate
            raise
        self._after_db_commit()
        return outcome

    def _after_db_commit(self) -> None:
        if self._relay is not None:
            self._relay.notify()

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException, *, attempts: int) -> Outcome:
        if isinstance(self._routes[record.topic], DeadLetterRoute):
            # Observing a DLQ failed: the message stays in its DLQ, so nothing is lost; no DLQ of a DLQ.
            log.error(
                "could not record a dead letter",
                extra={"topic": record.topic, "offset": record.offset, "outcome": f"{type(exc).__name__}: {exc}"[:500]},
            )
            metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.dlq).inc()
            return Outcome.dlq
        reason = f"{type(exc).__name__}: {exc}"[:DLQ_REASON_MAX_CHARS]
        error_type = type(exc).__name__
        if isinstance(exc, ProvenanceError):
            error_type = "provenance"
            metrics.PROVENANCE_REJECTED.labels(self._service, record.topic).inc()
        dlq_headers = [
            ("dlq.error_type", error_type.encode()),
            ("dlq.original_topic", record.topic.encode()),
            ("dlq.original_partition", str(record.partition).encode()),
            ("dlq.original_offset", str(record.offset).encode()),
            ("dlq.consumer_group", self.group_id.encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.failed_at", utc_now().isoformat().encode()),
        ]
        key = record.key.decode(errors="replace") if record.key else ""
        copy = _dead_letter_copy(record, key, reason, dlq_headers, self._settings.kafka_max_message_bytes)
        try:
            await self._producer.send(dlq_topic(record.topic), key=key, value=copy.value, headers=copy.headers)
        except Exception:
            # Not acknowledged by the broker: do not commit, so nothing is lost (RnpcConsumerRetrying).
            log.exception("dead-letter send failed; will retry", extra={"topic": record.topic})
            metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.retry).inc()
            return Outcome.retry
        if copy.omitted:
            log.warning(
                "dead letter trimmed to fit the message size limit",
                extra={"topic": record.topic, "offset": record.offset, "outcome": ", ".join(copy.omitted)},
            )
        metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.dlq).inc()
        metrics.DLQ_MESSAGES.labels(self._service, record.topic).inc()
        log.warning("event dead-lettered", extra={"topic": record.topic, "offset": record.offset, "outcome": reason})
        return Outcome.dlq


DLQ_REASON_MAX_CHARS = 4000
# dlq.reason when the full copy does not fit: the exception type and the start of its message.
DLQ_REASON_SHORT_CHARS = 500
# dlq.value_omitted: the copy carries no value, the original stays at dlq.original_* in its topic.
VALUE_OMITTED_TOO_LARGE = "too_large"


@dataclass(frozen=True)
class _DeadLetterCopy:
    value: bytes
    headers: list[tuple[str, bytes]]
    omitted: tuple[str, ...]  # what was left out to fit (for the log); empty for a full copy


def _dead_letter_copy(
    record: ConsumerRecord, key: str, reason: str, dlq_headers: list[tuple[str, bytes]], max_bytes: int
) -> _DeadLetterCopy:
    """The DLQ copy of `record` that fits `max_bytes` (the producer's max_request_size), sized as
    the outbox sizes events (`message_size_bytes`, headers included).

    The broker accepts originals up to its own limit, which may exceed the producer's: a full copy
    (value, original headers, dlq.* headers) that does not fit would fail to send on every attempt
    and block the partition. So, in order, the first that fits: the full copy; the value without
    the original headers and with a shortened reason; no value (`dlq.value_omitted=too_large`,
    `dlq.value_bytes`, `dlq.value_sha256`: the original stays at dlq.original_partition/offset in
    its topic until that topic's retention) with the original headers; no value, no original
    headers. If even the last does not fit (a key or limit out of all proportion) it is sent as
    it is and the send fails: retried, never lost, and alerted on (RnpcConsumerRetrying).
    """
    value = record.value or b""
    original: list[tuple[str, bytes]] = list(record.headers or [])
    value_note = [
        ("dlq.value_omitted", VALUE_OMITTED_TOO_LARGE.encode()),
        ("dlq.value_bytes", str(len(value)).encode()),
        ("dlq.value_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]

    def copy(*, keep_value: bool, full: bool) -> _DeadLetterCopy:
        omitted: tuple[str, ...] = () if keep_value else ("value",)
        if full:
            headers = [*original, ("dlq.reason", reason.encode()), *dlq_headers]
        else:
            short = reason[:DLQ_REASON_SHORT_CHARS]
            headers = [("dlq.reason", short.encode()), *dlq_headers]
            if original:
                headers.append(("dlq.headers_omitted", str(len(original)).encode()))
                omitted += ("original headers",)
            if short != reason:
                omitted += ("end of the reason",)
        return _DeadLetterCopy(value, headers, omitted) if keep_value else _DeadLetterCopy(b"", headers + value_note, omitted)

    candidates = [copy(keep_value=True, full=True), copy(keep_value=True, full=False),
                  copy(keep_value=False, full=True), copy(keep_value=False, full=False)]
    for candidate in candidates:
        if message_size_bytes(candidate.value, key, candidate.headers) <= max_bytes:
            return candidate
    return candidates[-1]


def _inbox_row(consumer: str, item: _Item) -> dict[str, Any]:
    record = item.record
    return {
        "consumer": consumer,
        "event_id": item.event_id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "processed_at": utc_now(),
    }


def _run_effect(session: Session, item: _Item) -> None:
    assert item.effect is not None
    token = correlation_id_var.set(item.correlation_id)  # this thread's context: logs carry the event's id
    try:
        item.effect(session)
    finally:
        correlation_id_var.reset(token)


# Core statements built once on the session's connection: the ORM's bulk-insert path and query
# work cost more than the statements.
_INBOX_INSERT = INBOX_TABLE.insert()
_SEEN_IN_INBOX = select(INBOX_TABLE.c.event_id).where(
    INBOX_TABLE.c.consumer == bindparam("consumer"), INBOX_TABLE.c.event_id.in_(bindparam("ids", expanding=True))
)


def _apply_batch_unit(connection: Connection, consumer: str, items: list[_Item]) -> dict[str, Outcome]:
    """The unit of work of a poll batch: skip events already in the inbox, insert the others' inbox
    rows in one statement, run their effects; the `Units` commits when this returns."""
    with Session(bind=connection) as session:
        ids = [item.event_id for item in items]
        seen = set(session.connection().execute(_SEEN_IN_INBOX, {"consumer": consumer, "ids": ids}).scalars())
        outcomes: dict[str, Outcome] = {}
        fresh: list[_Item] = []
        for item in items:
            if item.event_id in seen:
                outcomes[item.event_id] = Outcome.duplicate
            else:
                seen.add(item.event_id)
                fresh.append(item)
                outcomes[item.event_id] = Outcome.success
        if fresh:
            session.connection().execute(_INBOX_INSERT, [_inbox_row(consumer, item) for item in fresh])
            for item in fresh:
                _run_effect(session, item)
            session.flush()
    return outcomes


def _apply_unit(connection: Connection, consumer: str, item: _Item) -> Outcome:
    """One event's unit of work: the fallback when its poll batch could not commit as a whole."""
    if _seen(connection, consumer, item.event_id):
        return Outcome.duplicate
    with Session(bind=connection) as session:
        session.connection().execute(_INBOX_INSERT, [_inbox_row(consumer, item)])
        _run_effect(session, item)
        session.flush()
    return Outcome.success


def _seen(connection: Connection, consumer: str, event_id: str) -> bool:
    with Session(bind=connection) as session:
        return session.get(InboxEvent, (consumer, event_id)) is not None


def _read_dead_letter(record: ConsumerRecord) -> DeadLetter:
    headers = decode_dlq_headers(record.headers)
    return DeadLetter(
        dlq_topic=record.topic,
        key=record.key.decode(errors="replace") if record.key else "",
        value=record.value or b"",
        reason=headers.get("dlq.reason", "unknown"),
        error_type=headers.get("dlq.error_type", "unknown"),
        original_topic=headers.get("dlq.original_topic", record.topic.removesuffix(".dlq")),
        consumer_group=headers.get("dlq.consumer_group", "unknown"),
        value_omitted=headers.get("dlq.value_omitted"),
        original_position=original_position(headers),
    )


def original_position(headers: dict[str, str]) -> str | None:
    """The original message's `partition:offset` in its topic (from decoded dlq.* headers), when recorded."""
    partition, offset = headers.get("dlq.original_partition"), headers.get("dlq.original_offset")
    return f"{partition}:{offset}" if partition is not None and offset is not None else None


def dead_letter_key(record: ConsumerRecord) -> str:
    """The inbox key of an observed dead letter: its position and a digest of the message itself.

    The position alone is not an identity: an embedded (in-memory) broker restarts its offsets at
    0, and a new dead letter at a position already observed (inbox rows are kept for a day) was
    skipped as a redelivery. The digest covers the topic, key, value and headers (those set by the
    dead-lettering consumer include its group and the failure time), so a redelivery of the same
    message dedupes and any other message does not; the key stays within the inbox column however
    long the topic or the original event id."""
    fields = [record.topic.encode(), record.key, record.value]
    for name, value in record.headers or []:
        fields += [name.encode(errors="replace") if isinstance(name, str) else name, value]
    return f"dlq:{record.partition}:{record.offset}:{fields_digest(fields)}"


def fields_digest(fields: Iterable[bytes | None]) -> str:
    """sha256 hex of `fields`, each length-prefixed and a null distinct from empty: no two field
    lists digest the same bytes."""
    digest = hashlib.sha256()
    for value in fields:
        digest.update(b"-" if value is None else b"%d:%s" % (len(value), value))
    return digest.hexdigest()


def decode_dlq_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The `dlq.*` headers as text. Kafka allows a null header value, and a dead letter carries the
    original message's headers as its producer set them: a null value is left out (as if absent),
    bytes that are not UTF-8 are decoded with replacement characters."""
    return {
        key: value.decode(errors="replace")
        for key, value in (headers or [])
        if isinstance(key, str) and key.startswith("dlq.") and isinstance(value, bytes | bytearray)
    }

