"""Transactional outbox: write events with the effect; a relay publishes them and marks them sent.

The relay claims, per pass and in one statement, the oldest pending row of each key (so a key's
events keep their order and one failing row holds back its own key only), sends them pipelined
and awaits the acknowledgements together, then marks them in one statement. A row that can never
be sent (bigger than the broker's limit) or that fails `max_attempts` times while other rows go
through is parked: status `parked`, its reason kept, counted, and announced on `<topic>.dlq` so
the gateway shows it on the case. Gauges and retention run on a timer, not on every pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaError
from sqlalchemy import Select, bindparam, delete, func, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_shared import metrics
from rnpc_shared.contracts.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent, dlq_topic, new_event
from rnpc_shared.db import Units, new_row, utc_now, utf8_bytes
from rnpc_shared.kafka.producer import EventProducer, Message
from rnpc_shared.kafka.tables import (
    INBOX_TABLE,
    OUTBOX_TABLE,
    STAGE_INPUT_TABLE,
    OutboxEvent,
    OutboxStatus,
)

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
# Room for the record batch, record and header framing around key and value (Kafka v2 format).
MESSAGE_OVERHEAD_BYTES = 512
# Framing of one record header beyond its name and value: two varint lengths, at most 5 bytes each.
HEADER_OVERHEAD_BYTES = 10
PARKED_ERROR_TYPE = "OutboxParked"
# The `dlq.kind` header of the relay's notice of a parked row: a notice, never a CloudEvent (the
# DLQ replay skips it; the row is re-driven from its outbox, not from the DLQ).
PARKED_NOTICE_KIND = "outbox-parked"


def message_size_bytes(payload: bytes, key: str, headers: Iterable[tuple[str, bytes | None]] = ()) -> int:
    """What an event (its UTF-8 JSON) weighs against the broker's message size limit; headers
    beyond the content type (which the overhead covers) are counted with their framing."""
    header_bytes = sum(len(name.encode()) + len(value or b"") + HEADER_OVERHEAD_BYTES for name, value in headers)
    return len(payload) + len(key.encode()) + MESSAGE_OVERHEAD_BYTES + header_bytes


def event_json(event: CloudEvent) -> bytes:
    """An event as the UTF-8 JSON it is sent as: serialised once, its size known without encoding
    again (~0.09 ms for a 64 KB non-ASCII event)."""
    return event.__pydantic_serializer__.to_json(event)


def outbox_row(topic: str, event: CloudEvent, *, payload: bytes | None = None) -> dict[str, Any]:
    """The outbox row of an event (a Core insert's parameters: no entity, no flush).

    `payload`: the event already serialised by the caller (`event_json`, e.g. to measure it), not
    serialised twice."""
    payload = payload if payload is not None else event_json(event)
    return new_row(
        OutboxEvent, id=uuid.UUID(event.id), topic=topic, key=event.subject, payload=payload.decode(), payload_bytes=len(payload)
    )


OUTBOX_INSERT = OUTBOX_TABLE.insert()


def add_to_outbox(session: Session, topic: str, event: CloudEvent, *, payload: bytes | None = None) -> None:
    """Stage an event in the caller's transaction; nothing is sent until that transaction commits.
    Async callers: `await run_sync(session, add_to_outbox, …)`, or for many events at once
    `await (await session.connection()).execute(OUTBOX_INSERT, [outbox_row(…), …])`."""
    session.connection().execute(OUTBOX_INSERT, outbox_row(topic, event, payload=payload))


def finished_outbox_ids(created_before: datetime, limit: int) -> Select[tuple[Any]]:
    """Ids of rows sent or parked before `created_before`: retention deletes these. The statuses
    are named (`!= pending` cannot use the (status, created_at) index: every pass scanned every
    kept ~75 KB row, ~90 ms per 2,700 rows)."""
    outbox = OUTBOX_TABLE
    return (
        select(outbox.c.id)
        .where(outbox.c.status.in_((OutboxStatus.published, OutboxStatus.parked)))
        .where(outbox.c.created_at < created_before)
        .limit(limit)
    )


@dataclass(frozen=True)
class Retention:
    """How long finished outbox rows and inbox rows are kept (see ServiceSettings)."""

    outbox_s: float
    inbox_s: float
    batch_rows: int = 5000


@dataclass
class _Claimed:
    id: uuid.UUID
    topic: str
    key: str
    payload: bytes  # the UTF-8 JSON, read as bytes (`utf8_bytes`): sent as it is
    attempts: int


def _claim_statement(batch_size: int) -> Select[Any]:
    """The oldest pending row of each key (per-key order), oldest first, `batch_size` at most."""
    table = OUTBOX_TABLE
    ranked = (
        select(table.c.id, func.row_number().over(partition_by=table.c.key, order_by=(table.c.created_at, table.c.id)).label("place"))
        .where(table.c.status == OutboxStatus.pending)
        .subquery()
    )
    return (
        select(table.c.id, table.c.topic, table.c.key, table.c.attempts)
        .where(table.c.id.in_(select(ranked.c.id).where(ranked.c.place == 1)))
        .order_by(table.c.created_at, table.c.id)
        .limit(batch_size)
        # Replicas share the table in production: each row goes to one relay.
        .with_for_update(skip_locked=True)
    )


_PAYLOADS = select(OUTBOX_TABLE.c.id, utf8_bytes(OUTBOX_TABLE.c.payload)).where(OUTBOX_TABLE.c.id.in_(bindparam("ids", expanding=True)))
_MARK_PUBLISHED = (
    update(OUTBOX_TABLE)
    .where(OUTBOX_TABLE.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=OutboxStatus.published, published_at=bindparam("at"))
)


def _claim_rows(connection: Connection, claim: Select[Any]) -> list[_Claimed]:
    """A pass's rows, with their payloads as the bytes to send."""
    claimed = connection.execute(claim).all()
    if not claimed:
        return []
    # Payloads are read by id once claimed: in the claim's sort (SQLite's sorter holds whole rows)
    # every pending ~75 KB payload was copied on every pass, slower as a backlog grew.
    payloads: dict[uuid.UUID, bytes] = dict(connection.execute(_PAYLOADS, {"ids": [row.id for row in claimed]}).all())
    return [_Claimed(row.id, row.topic, row.key, payloads[row.id], row.attempts) for row in claimed]


def _mark_rows(connection: Connection, published_ids: list[uuid.UUID], failed: list[tuple[uuid.UUID, dict[str, Any]]]) -> None:
    if published_ids:
        connection.execute(_MARK_PUBLISHED, {"ids": published_ids, "at": utc_now()})
    for row_id, values in failed:
        connection.execute(update(OUTBOX_TABLE).where(OUTBOX_TABLE.c.id == row_id).values(**values))


class OutboxRelay:
    """Publishes pending outbox rows, in order per key; at-least-once (downstream dedupes by id)."""

    def __init__(
        self,
        *,
        service: str,
        session_factory: async_sessionmaker[AsyncSession],
        producer: EventProducer,
        poll_interval_s: float,
        batch_size: int,
        max_attempts: int = 10,
        max_message_bytes: int = 1_048_576,
        housekeeping_interval_s: float = 10.0,
        retention: Retention | None = None,
    ) -> None:
        self._service = service
        self._sessions = session_factory
        self._producer = producer
        self._poll_interval_s = poll_interval_s
        self._max_attempts = max_attempts
        self._max_message_bytes = max_message_bytes
        self._housekeeping_interval_s = housekeeping_interval_s
        self._retention = retention
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.oldest_pending_age_s = 0.0  # sampled by housekeeping; /readyz reads it
        metrics.at_zero(metrics.OUTBOX_PARKED, (service, "too_large"), (service, "failing"))
        metrics.at_zero(metrics.BACKGROUND_ERRORS, (service, "outbox-relay"), (service, "outbox-housekeeping"))
        self._claim = _claim_statement(batch_size)  # built once: every pass runs it
        # A pass's two steps (claim, mark) on a connection of the relay's own: one hop each on
        # SQLite, where aiosqlite hopped threads for every DBAPI call (see `Units.steps`).
        self._units = Units(session_factory.kw["bind"].url.render_as_string(hide_password=False), name=f"{service}-relay")

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows, so they go out without waiting a poll."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        housekeeping = asyncio.create_task(self._housekeeping_loop(), name="outbox-housekeeping")
        try:
            while not self._stopping:
                try:
                    published = await self.publish_pending()
                except Exception:  # the relay must survive a DB or broker outage and try again
                    log.exception("outbox relay pass failed")
                    metrics.BACKGROUND_ERRORS.labels(self._service, "outbox-relay").inc()
                    published = 0
                if published == 0:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
                    except TimeoutError:
                        pass
                    self._wakeup.clear()
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)
            await self._units.close()

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                await self.housekeeping()
            except Exception:  # a failed pass is logged and counted; the next one runs anyway
                log.exception("outbox housekeeping failed")
                metrics.BACKGROUND_ERRORS.labels(self._service, "outbox-housekeeping").inc()
            await asyncio.sleep(self._housekeeping_interval_s)  # a schedule, not synchronisation

    async def housekeeping(self) -> None:
        if self._retention is not None:
            await self.apply_retention(self._retention)
        await self.refresh_gauges()

    async def publish_pending(self) -> int:
        """One pass: claim the oldest pending row of each key, send them together, mark them."""
        async with self._units.steps() as run:
            rows: list[_Claimed] = await run(_claim_rows, self._claim)
            if not rows:
                return 0
            failures: dict[uuid.UUID, BaseException] = {
                row.id: OversizeError(size_bytes, self._max_message_bytes)
                for row in rows
                if (size_bytes := message_size_bytes(row.payload, row.key)) > self._max_message_bytes
            }
            sendable = [row for row in rows if row.id not in failures]
            errors = await self._producer.send_many(
                [Message(row.topic, row.key, row.payload, CONTENT_TYPE_HEADERS) for row in sendable]
            )
            failures |= {row.id: error for row, error in zip(sendable, errors, strict=True) if error is not None}
            published_ids = [row.id for row in rows if row.id not in failures]
            failed: list[tuple[uuid.UUID, dict[str, Any]]] = []
            if failures:
                # A broker outage fails every row: that is not the rows' fault and must not park them.
                broker_up = bool(published_ids) or await self._producer.broker_reachable()
                for row in rows:
                    if row.id in failures:
                        failed.append((row.id, await self._failure(row, failures[row.id], broker_up=broker_up)))
            await run(_mark_rows, published_ids, failed)
        if published_ids:
            metrics.OUTBOX_PUBLISHED.labels(self._service, "ok").inc(len(published_ids))
        return len(published_ids)

    async def _failure(self, row: _Claimed, error: BaseException, *, broker_up: bool) -> dict[str, Any]:
        """The failed row's new values: its attempts and reason, and `parked` once it is hopeless
        (announced on the DLQ before the pass commits)."""
        metrics.OUTBOX_PUBLISHED.labels(self._service, "error").inc()
        reason = f"{type(error).__name__}: {error or 'no acknowledgement'}"[:2000]
        counts = isinstance(error, OversizeError) or broker_up or not _retriable(error)
        attempts = row.attempts + (1 if counts else 0)
        values: dict[str, Any] = {"attempts": attempts, "last_error": reason}
        kind = "too_large" if isinstance(error, OversizeError) else "failing"
        if isinstance(error, OversizeError) or attempts >= self._max_attempts:
            values["status"] = OutboxStatus.parked
            metrics.OUTBOX_PARKED.labels(self._service, kind).inc()
            log.error("outbox row parked", extra={"event_id": str(row.id), "topic": row.topic, "outcome": reason})
            await self._announce_parked(row, reason)
        else:
            log.warning("outbox publish failed", extra={"event_id": str(row.id), "topic": row.topic, "outcome": reason})
        return values

    async def _announce_parked(self, row: _Claimed, reason: str) -> None:
        """A small notice on `<topic>.dlq` (never the big payload): the gateway shows it on the case.

        Best effort: when even the notice cannot be sent (the broker refuses the topic itself), the
        row stays parked with its reason, counted and alerted on."""
        reference = parked_reference(row.payload)
        headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.error_type", PARKED_ERROR_TYPE.encode()),
            ("dlq.kind", PARKED_NOTICE_KIND.encode()),
            ("dlq.original_topic", row.topic.encode()),
            ("dlq.consumer_group", f"rnpc-{self._service}".encode()),
            ("dlq.event_id", str(row.id).encode()),
            ("dlq.failed_at", utc_now().isoformat().encode()),
        ]
        value = json.dumps({"id": str(row.id), "type": row.topic, "subject": row.key, "data": reference}).encode()
        [error] = await self._producer.send_many([Message(dlq_topic(row.topic), row.key, value, headers)])
        if error is not None:
            log.warning("could not announce a parked outbox row", extra={"event_id": str(row.id), "outcome": repr(error)})

    async def apply_retention(self, retention: Retention) -> None:
        now = utc_now()
        outbox, inbox, inputs = OUTBOX_TABLE, INBOX_TABLE, STAGE_INPUT_TABLE
        async with self._sessions() as session:
            finished = finished_outbox_ids(now - timedelta(seconds=retention.outbox_s), retention.batch_rows)
            deleted = (await session.exec(delete(outbox).where(outbox.c.id.in_(finished)))).rowcount
            old_inbox = (
                select(inbox.c.consumer, inbox.c.event_id)
                .where(inbox.c.processed_at < now - timedelta(seconds=retention.inbox_s))
                .limit(retention.batch_rows)
            )
            deleted_inbox = (
                await session.exec(delete(inbox).where(tuple_(inbox.c.consumer, inbox.c.event_id).in_(old_inbox)))
            ).rowcount
            # Parts of a stage input that never completed (a superseded or dead-lettered version).
            deleted_inputs = (
                await session.exec(
                    delete(inputs).where(inputs.c.received_at < now - timedelta(seconds=retention.inbox_s))
                )
            ).rowcount
            await session.commit()
        for table_name, count in (("outbox", deleted), ("inbox", deleted_inbox), ("stage_inputs", deleted_inputs)):
            if count:
                metrics.RETENTION_DELETED.labels(self._service, table_name).inc(count)

    async def refresh_gauges(self) -> None:
        outbox, inbox, inputs = OUTBOX_TABLE, INBOX_TABLE, STAGE_INPUT_TABLE
        async with self._sessions() as session:
            connection = await session.connection()  # Core statements: plain rows
            pending, oldest = (
                await connection.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == OutboxStatus.pending)
                )
            ).one()
            sizes = {
                "outbox": (await connection.execute(select(func.count(), func.sum(outbox.c.payload_bytes)))).one(),
                "inbox": (
                    await connection.execute(
                        select(
                            func.count(),
                            func.sum(func.length(inbox.c.event_id) + func.length(inbox.c.consumer) + func.length(inbox.c.topic)),
                        )
                    )
                ).one(),
                "stage_inputs": (await connection.execute(select(func.count(), func.sum(func.length(inputs.c.data))))).one(),
            }
        metrics.OUTBOX_PENDING.labels(self._service).set(pending)
        for table_name, (rows, size) in sizes.items():
            metrics.TABLE_ROWS.labels(self._service, table_name).set(rows)
            metrics.TABLE_BYTES.labels(self._service, table_name).set(size or 0)
        age_s = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=utc_now().tzinfo)
            age_s = (utc_now() - oldest).total_seconds()
        self.oldest_pending_age_s = age_s
        metrics.OUTBOX_OLDEST_AGE.labels(self._service).set(age_s)


class OversizeError(Exception):
    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"event of {size_bytes} bytes exceeds the broker's message limit of {limit_bytes} bytes")


def _retriable(error: BaseException) -> bool:
    if isinstance(error, KafkaError):
        return bool(error.retriable)
    return isinstance(error, (TimeoutError, ConnectionError, OSError))


def parked_reference(payload: bytes) -> dict[str, Any]:
    """The (recurrence_id, version, content_hash) an event was about, for the parked notice."""
    try:
        data = json.loads(payload).get("data") or {}
    except (ValueError, AttributeError):
        return {}
    reference = {k: data[k] for k in ("recurrence_id", "version", "content_hash") if k in data}
    for part in ("record", "recommendation"):
        nested = data.get(part)
        if isinstance(nested, dict) and "version" not in reference and isinstance(nested.get("version"), int):
            reference |= {"recurrence_id": nested.get("recurrence_id"), "version": nested["version"]}
    return reference


def emit(
    session: Session,
    *,
    service: str,
    topic: str,
    subject: str,
    data: dict[str, Any],
    correlation_id: str | None,
) -> CloudEvent:
    """Build the CloudEvent for `topic` (type = topic name) and stage it in the outbox."""
    event = new_event(
        source=f"urn:rnpc:{service}", type_=topic, subject=subject, data=data, correlation_id=correlation_id
    )
    add_to_outbox(session, topic, event)
    return event
