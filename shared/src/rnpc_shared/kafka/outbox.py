"""Transactional outbox: write events with the effect; a relay publishes them and marks them sent."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_shared import metrics
from rnpc_shared.contracts.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent, new_event
from rnpc_shared.db import utc_now
from rnpc_shared.kafka.producer import EventProducer
from rnpc_shared.kafka.tables import OutboxEvent

log = logging.getLogger(__name__)


def add_to_outbox(session: AsyncSession, topic: str, event: CloudEvent) -> None:
    """Stage an event in the caller's transaction; nothing is sent until that transaction commits."""
    session.add(
        OutboxEvent(
            id=uuid.UUID(event.id),
            topic=topic,
            key=event.subject,
            payload=event.model_dump_json(),
        )
    )


class OutboxRelay:
    """Publishes pending outbox rows in creation order; at-least-once (downstream dedupes by id)."""

    def __init__(
        self,
        *,
        service: str,
        session_factory: async_sessionmaker[AsyncSession],
        producer: EventProducer,
        poll_interval_s: float,
        batch_size: int,
    ) -> None:
        self._service = service
        self._sessions = session_factory
        self._producer = producer
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wakeup = asyncio.Event()
        self._stopping = False

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows, so they go out without waiting a poll."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                published = await self.publish_pending()
            except Exception:  # the relay must survive a DB or broker outage and try again
                log.exception("outbox relay pass failed")
                published = 0
            if published == 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
                except TimeoutError:
                    pass
                self._wakeup.clear()

    async def publish_pending(self) -> int:
        """One pass: send up to a batch of pending rows in order; stop at the first failure."""
        published = 0
        async with self._sessions() as session:
            rows = (
                await session.exec(
                    select(OutboxEvent)
                    .where(col(OutboxEvent.published_at).is_(None))
                    .order_by(col(OutboxEvent.created_at), col(OutboxEvent.id))
                    .limit(self._batch_size)
                    # Replicas share the table in production: each row goes to one relay.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                try:
                    await self._producer.send(
                        row.topic,
                        key=row.key,
                        value=row.payload.encode(),
                        headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
                    )
                except Exception as exc:  # keep per-key order: stop this pass at the first failure
                    row.attempts += 1
                    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    metrics.OUTBOX_PUBLISHED.labels(self._service, "error").inc()
                    log.warning("outbox publish failed", extra={"event_id": str(row.id), "topic": row.topic})
                    break
                row.published_at = utc_now()
                published += 1
                metrics.OUTBOX_PUBLISHED.labels(self._service, "ok").inc()
            await session.commit()
        await self.refresh_gauges()
        return published

    async def refresh_gauges(self) -> None:
        async with self._sessions() as session:
            pending, oldest = (
                await session.exec(
                    select(func.count(), func.min(OutboxEvent.created_at)).where(
                        col(OutboxEvent.published_at).is_(None)
                    )
                )
            ).one()
        metrics.OUTBOX_PENDING.labels(self._service).set(pending)
        age_s = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=utc_now().tzinfo)
            age_s = (utc_now() - oldest).total_seconds()
        metrics.OUTBOX_OLDEST_AGE.labels(self._service).set(age_s)


def emit(
    session: AsyncSession,
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
