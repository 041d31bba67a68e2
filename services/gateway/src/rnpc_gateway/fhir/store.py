"""Gateway DB use cases of the EHR integration (the caller owns the transaction)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Subquery, and_, bindparam, delete, func, or_
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.fhir import metrics
from rnpc_gateway.fhir.subscriptions import Notification, Tracking, ranges, subtract, track_events
from rnpc_gateway.tables import PendingFhirEvents, RecommendationView, RecordVersion, SubscriptionState
from rnpc_shared.db import Units, utc_now

log = logging.getLogger(__name__)


async def note_notification(session: AsyncSession, notification: Notification) -> Tracking:
    """Advance the subscription's event counter; a gap is counted, logged and stored."""
    state = await session.get(SubscriptionState, notification.subscription, with_for_update=True)
    if state is None:
        state = SubscriptionState(subscription=notification.subscription)
    tracking = track_events(state.last_event_number, notification)
    state.topic = notification.topic or state.topic
    state.status = notification.status or state.status
    state.last_event_number = tracking.last_event_number
    state.updated_at = utc_now()
    for first, last in tracking.gaps:
        missed = f"events {first}-{last}" if first != last else f"event {first}"
        state.gaps_detected += 1
        state.last_gap = f"{missed} missed (noticed on a {notification.type} at {state.updated_at.isoformat()})"
        metrics.SUBSCRIPTION_GAPS.inc()
        log.warning("subscription event gap", extra={"subscription": notification.subscription, "missed": missed})
    session.add(state)
    return tracking


async def note_recovery(session: AsyncSession, subscription: str, outcome: str) -> None:
    """What reading the missed events back gave, after the gap noted last (the caller commits)."""
    state = await session.get(SubscriptionState, subscription, with_for_update=True)
    if state is not None and state.last_gap:
        state.last_gap = f"{state.last_gap}; {outcome}"[:4000]
        session.add(state)


@dataclass(frozen=True)
class Pending:
    """Events to keep for a retry: first..last, with their focus when it is known (one event)."""

    first: int
    last: int
    focus: str | None
    reason: str


def keep_pending(
    session: AsyncSession, subscription: str, pending: list[Pending], *, next_attempt_at: datetime,
    attempts: int = 0, noticed_at: datetime | None = None,
) -> list[PendingFhirEvents]:
    """Keep events to retry (the caller commits). A range derived from an earlier row carries its
    attempts and age on, so its backoff keeps growing and its alert keeps its start."""
    rows = [
        PendingFhirEvents(
            subscription=subscription, first_event=item.first, last_event=item.last, focus=item.focus, reason=item.reason[:4000],
            attempts=attempts, noticed_at=noticed_at or utc_now(), next_attempt_at=next_attempt_at,
        )
        for item in pending
    ]
    session.add_all(rows)
    for item in pending:
        log.warning("subscription events kept to retry", extra={
            "subscription": subscription, "events": f"{item.first}-{item.last}", "reason": item.reason})
    return rows


async def release(session: AsyncSession, rows: list[PendingFhirEvents]) -> None:
    """Delete kept rows by id, gone already or not (another delivery may have settled them; the
    caller commits)."""
    ids = [row.id for row in rows]
    if ids:
        await session.exec(delete(PendingFhirEvents).where(col(PendingFhirEvents.id).in_(ids)))  # type: ignore[call-overload]


# Kept rows are looked up a few ranges of event numbers at a time: SQLite refuses a WHERE clause
# whose expression tree is deeper than 1000 (one OR term deep per range).
COVERING_RANGES_PER_QUERY = 200


def _covering(subscription: str, spans: list[tuple[int, int]]) -> Any:
    return select(PendingFhirEvents).where(
        PendingFhirEvents.subscription == subscription,
        or_(*(and_(col(PendingFhirEvents.first_event) <= last, col(PendingFhirEvents.last_event) >= first) for first, last in spans)),
    )


async def _rows_covering(session: AsyncSession, subscription: str, numbers: Iterable[int], *, for_update: bool = False) -> list[PendingFhirEvents]:
    """The kept rows holding any of `numbers`, each once."""
    spans, rows = ranges(numbers), {}
    for start in range(0, len(spans), COVERING_RANGES_PER_QUERY):
        query = _covering(subscription, spans[start:start + COVERING_RANGES_PER_QUERY])
        for row in (await session.exec(query.with_for_update() if for_update else query)).all():
            rows[row.id] = row
    return list(rows.values())


async def pending_among(session: AsyncSession, subscription: str, numbers: list[int]) -> set[int]:
    """Which of `numbers` are kept to retry (a redelivered notification retries them at once)."""
    rows = await _rows_covering(session, subscription, numbers)
    return {n for n in numbers for row in rows if row.first_event <= n <= row.last_event}


async def resolve_pending(session: AsyncSession, subscription: str, numbers: set[int]) -> None:
    """Take ingested event numbers out of the kept ranges (the caller commits)."""
    for row in await _rows_covering(session, subscription, numbers, for_update=True):
        rest = subtract(row.first_event, row.last_event, numbers)
        await session.delete(row)
        keep_pending(session, subscription, [Pending(first, last, row.focus if first == last else None, row.reason) for first, last in rest],
                     next_attempt_at=row.next_attempt_at, attempts=row.attempts, noticed_at=row.noticed_at)


async def claim_due(session: AsyncSession, *, now: datetime, lease_s: float, limit: int = 50) -> list[PendingFhirEvents]:
    """Rows due for a retry, leased for `lease_s` (replicas skip each other's; a replica that dies
    mid-retry leaves its rows to be taken again when the lease ends). The caller commits."""
    rows = (await session.exec(
        select(PendingFhirEvents).where(col(PendingFhirEvents.next_attempt_at) <= now)
        .order_by(col(PendingFhirEvents.next_attempt_at)).limit(limit).with_for_update(skip_locked=True)
    )).all()
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=lease_s)
        session.add(row)
    return list(rows)


async def list_pending(session: AsyncSession, limit: int) -> list[PendingFhirEvents]:
    return list((await session.exec(select(PendingFhirEvents).order_by(col(PendingFhirEvents.noticed_at), col(PendingFhirEvents.id)).limit(limit))).all())


async def dismiss_pending(session: AsyncSession, pending_id: int) -> str | None:
    """Delete one kept row (the caller commits); what it was, or None if there is none."""
    row = await session.get(PendingFhirEvents, pending_id, with_for_update=True)
    if row is None:
        return None
    await session.delete(row)
    return f"{row.subscription} events {row.first_event}-{row.last_event}"


async def pending_summary(session: AsyncSession, now: datetime) -> tuple[int, float]:
    """Event numbers kept to retry, and the age in seconds of the oldest (0 when none)."""
    count, oldest = (await session.exec(select(
        func.coalesce(func.sum(PendingFhirEvents.last_event - PendingFhirEvents.first_event + 1), 0),
        func.min(PendingFhirEvents.noticed_at),
    ))).one()
    return int(count), (now - oldest).total_seconds() if oldest is not None else 0.0


def _latest_versions() -> Subquery:
    """(recurrence_id, version): the latest version of each recurrence of the patient bound as
    `patient_ref` (a bound parameter: the statements below are built, and compiled, once)."""
    return (
        select(RecordVersion.recurrence_id, func.max(RecordVersion.version).label("version"))
        .where(RecordVersion.patient_ref == bindparam("patient_ref"))
        .group_by(RecordVersion.recurrence_id)
        .subquery()
    )


def _latest_body_statement() -> Select[Any]:
    latest = _latest_versions()
    views = RecommendationView.__table__  # type: ignore[attr-defined]
    return (
        select(views.c.body)
        .join(latest, and_(views.c.recurrence_id == latest.c.recurrence_id, views.c.version == latest.c.version))
        .order_by(views.c.issued_at.desc())
        .limit(1)
    )


LATEST_BODY_FOR_PATIENT = _latest_body_statement()


async def latest_views_for_patient(session: AsyncSession, patient_ref: str) -> list[tuple[RecommendationView, RecordVersion]]:
    """Per recurrence of the patient, the recommendation of its latest version (if issued)."""
    latest = _latest_versions()
    rows = (
        await session.exec(
            select(RecommendationView, RecordVersion)
            .join(latest, and_(col(RecommendationView.recurrence_id) == latest.c.recurrence_id, col(RecommendationView.version) == latest.c.version))
            .join(RecordVersion, and_(col(RecordVersion.recurrence_id) == latest.c.recurrence_id, col(RecordVersion.version) == latest.c.version))
            .order_by(col(RecommendationView.issued_at).desc()),
            params={"patient_ref": patient_ref},
        )
    ).all()
    return [(view, record) for view, record in rows]


def _latest_body(connection: Connection, patient_ref: str) -> str | None:
    body: str | None = connection.execute(LATEST_BODY_FOR_PATIENT, {"patient_ref": patient_ref}).scalar()
    return body


async def latest_body_for_patient(reads: Units, patient_ref: str) -> str | None:
    """The most recently issued current recommendation of the patient, as its stored JSON text
    (CDS Hooks answers from this alone: one Core query, one hop to the read connection, no ORM
    rows, no JSON columns decoded)."""
    return await reads.run(_latest_body, patient_ref)


async def view_by_id(session: AsyncSession, view_id: str) -> tuple[RecommendationView, RecordVersion] | None:
    try:
        key = uuid.UUID(view_id)
    except ValueError:
        return None
    view = await session.get(RecommendationView, key)
    if view is None:
        return None
    record = (
        await session.exec(select(RecordVersion).where(RecordVersion.recurrence_id == view.recurrence_id, RecordVersion.version == view.version))
    ).first()
    return None if record is None else (view, record)
