"""Consumer loop: parse → one DB transaction (inbox row + effect + outbox rows) → offset commit.

At-least-once delivery with idempotent effects:
- offsets are committed explicitly (`{tp: offset + 1}`) only after the DB commit;
- the inbox row makes a redelivered event a no-op;
- an invalid or unprocessable event goes to `<topic>.dlq` with the reason, then its offset is
  committed and the consumer moves on; a transient fault (DB or broker down) is retried and the
  offset is not committed, so the event is seen again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_shared import metrics
from rnpc_shared.contracts.events import CloudEvent, dlq_topic
from rnpc_shared.db import utc_now
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.outbox import OutboxRelay
from rnpc_shared.kafka.producer import EventProducer
from rnpc_shared.kafka.tables import InboxEvent
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


class PermanentError(Exception):
    """A handler's verdict that this event can never be processed (goes to the DLQ)."""


class Outcome(StrEnum):
    success = "success"
    duplicate = "duplicate"
    retry = "retry"
    dlq = "dlq"


@dataclass(frozen=True)
class Route:
    """How to handle one topic: the payload model and the effect, run inside the transaction."""

    payload_model: type[BaseModel]
    handle: Callable[[AsyncSession, CloudEvent, BaseModel], Awaitable[None]]


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

    def original_data(self) -> dict | None:
        """The original CloudEvent's data when it is still readable JSON, else None."""
        try:
            data = json.loads(self.value).get("data")
        except (ValueError, AttributeError):
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DeadLetterRoute:
    """Observe a dead-letter topic (e.g. to show a case's failed stage); dedupe by offset."""

    handle: Callable[[AsyncSession, DeadLetter], Awaitable[None]]


class _RebalanceCounter(ConsumerRebalanceListener):
    def __init__(self, service: str) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels(self._service).inc()


class EventConsumer:
    def __init__(
        self,
        *,
        settings: ServiceSettings,
        routes: dict[str, Route | DeadLetterRoute],
        session_factory: async_sessionmaker[AsyncSession],
        producer: EventProducer,
        relay: OutboxRelay | None,
    ) -> None:
        self._settings = settings
        self._service = settings.service_name
        self._routes = routes
        self._sessions = session_factory
        self._producer = producer
        self._relay = relay
        self._stopping = asyncio.Event()
        self.last_poll_monotonic: float | None = None
        self.started_monotonic = time.monotonic()

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
        )
        consumer.subscribe(list(self._routes), listener=_RebalanceCounter(self._service))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=100)
                self._mark_polled()
                for tp, records in batches.items():
                    for record in records:
                        if self._stopping.is_set():
                            break
                        outcome = await self._process(record)
                        if outcome is Outcome.retry:
                            # Not committed: read it again after a pause, in order.
                            consumer.seek(tp, record.offset)
                            await self._pause()
                            break
                        await self._commit(consumer, tp, record.offset + 1)
                await self._export_lag(consumer)
        finally:
            # Graceful: leave the group so partitions move to another replica at once.
            await consumer.stop()

    def _mark_polled(self) -> None:
        self.last_poll_monotonic = time.monotonic()
        metrics.CONSUMER_LAST_POLL.labels(self._service).set(time.time())

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(self._settings.retry_backoff_s, 0.05) * 5)
        except TimeoutError:
            pass

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int) -> None:
        try:
            await consumer.commit({tp: next_offset})
        except (CommitFailedError, KafkaError):
            # The event will be redelivered; the inbox makes that harmless.
            metrics.COMMIT_FAILURES.labels(self._service).inc()
            log.warning("offset commit failed", extra={"topic": tp.topic, "partition": tp.partition})

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await consumer.position(tp)
            metrics.CONSUMER_LAG.labels(self._service, tp.topic, str(tp.partition)).set(
                max(highwater - position, 0)
            )

    async def _process(self, record) -> Outcome:  # noqa: ANN001 - aiokafka ConsumerRecord
        started = time.perf_counter()
        route = self._routes[record.topic]
        if isinstance(route, DeadLetterRoute):
            letter = _read_dead_letter(record)
            event_id, correlation_id = f"dlq:{record.topic}:{record.partition}:{record.offset}", None
            effect = lambda session: route.handle(session, letter)  # noqa: E731
        else:
            try:
                event = CloudEvent.model_validate_json(record.value)
                payload = route.payload_model.model_validate(event.data)
            except (ValidationError, ValueError, TypeError) as exc:
                return await self._dead_letter(record, exc, attempts=1)
            event_id, correlation_id = event.id, event.correlationid
            effect = lambda session: route.handle(session, event, payload)  # noqa: E731

        token = correlation_id_var.set(correlation_id)
        try:
            for attempt in range(1, self._settings.handler_max_attempts + 1):
                try:
                    outcome = await self._apply(record, event_id, effect)
                except PermanentError as exc:
                    return await self._dead_letter(record, exc, attempts=attempt)
                except TRANSIENT_ERRORS as exc:
                    log.warning("transient failure, will retry", extra={"event_id": event_id}, exc_info=exc)
                    if attempt == self._settings.handler_max_attempts:
                        metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.retry).inc()
                        return Outcome.retry
                except Exception as exc:  # a bug or bad data the schema did not catch
                    log.exception("handler failed", extra={"event_id": event_id})
                    if attempt == self._settings.handler_max_attempts:
                        return await self._dead_letter(record, exc, attempts=attempt)
                else:
                    metrics.EVENTS_CONSUMED.labels(self._service, record.topic, outcome).inc()
                    metrics.EVENT_PROCESSING.labels(self._service, record.topic).observe(
                        time.perf_counter() - started
                    )
                    log.info("event handled", extra={"event_id": event_id, "topic": record.topic, "outcome": outcome})
                    return outcome
                await asyncio.sleep(self._settings.retry_backoff_s * attempt)  # backoff, not synchronisation
            return Outcome.retry
        finally:
            correlation_id_var.reset(token)

    async def _apply(
        self, record, event_id: str, effect: Callable[[AsyncSession], Awaitable[None]]  # noqa: ANN001
    ) -> Outcome:
        async with self._sessions() as session:
            if await session.get(InboxEvent, (self.group_id, event_id)) is not None:
                return Outcome.duplicate
            session.add(
                InboxEvent(
                    consumer=self.group_id,
                    event_id=event_id,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
            )
            await effect(session)
            try:
                await session.commit()
            except IntegrityError:
                # Another member of the group committed the same event first (rebalance race).
                await session.rollback()
                if await session.get(InboxEvent, (self.group_id, event_id)) is not None:
                    return Outcome.duplicate
                raise
        self._fault_kill_after_db_commit()
        if self._relay is not None:
            self._relay.notify()
        return Outcome.success

    def _fault_kill_after_db_commit(self) -> None:
        marker = self._settings.fault_kill_after_db_commit_marker
        if marker and not Path(marker).exists():
            Path(marker).write_text(f"killed after DB commit at {utc_now().isoformat()}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    async def _dead_letter(self, record, exc: BaseException, *, attempts: int) -> Outcome:  # noqa: ANN001
        if isinstance(self._routes[record.topic], DeadLetterRoute):
            # Observing a DLQ failed: the message stays in its DLQ, so nothing is lost; no DLQ of a DLQ.
            log.error("could not record a dead letter", extra={"topic": record.topic, "offset": record.offset})
            metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.dlq).inc()
            return Outcome.dlq
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        headers = list(record.headers or []) + [
            ("dlq.reason", reason.encode()),
            ("dlq.error_type", type(exc).__name__.encode()),
            ("dlq.original_topic", record.topic.encode()),
            ("dlq.original_partition", str(record.partition).encode()),
            ("dlq.original_offset", str(record.offset).encode()),
            ("dlq.consumer_group", self.group_id.encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.failed_at", utc_now().isoformat().encode()),
        ]
        key = record.key.decode(errors="replace") if record.key else ""
        try:
            await self._producer.send(dlq_topic(record.topic), key=key, value=record.value or b"", headers=headers)
        except Exception:
            # Not acknowledged by the broker: do not commit, so nothing is lost.
            log.exception("dead-letter send failed; will retry", extra={"topic": record.topic})
            metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.retry).inc()
            return Outcome.retry
        metrics.EVENTS_CONSUMED.labels(self._service, record.topic, Outcome.dlq).inc()
        metrics.DLQ_MESSAGES.labels(self._service, record.topic).inc()
        log.warning("event dead-lettered", extra={"topic": record.topic, "offset": record.offset, "outcome": reason})
        return Outcome.dlq


def _read_dead_letter(record) -> DeadLetter:  # noqa: ANN001
    headers = decode_dlq_headers(record.headers)
    return DeadLetter(
        dlq_topic=record.topic,
        key=record.key.decode(errors="replace") if record.key else "",
        value=record.value or b"",
        reason=headers.get("dlq.reason", "unknown"),
        error_type=headers.get("dlq.error_type", "unknown"),
        original_topic=headers.get("dlq.original_topic", record.topic.removesuffix(".dlq")),
        consumer_group=headers.get("dlq.consumer_group", "unknown"),
    )


def decode_dlq_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (headers or []) if k.startswith("dlq.")}

