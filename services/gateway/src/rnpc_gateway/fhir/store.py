"""Gateway DB use cases of the EHR integration (the caller owns the transaction)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Select, Subquery, and_, bindparam, func
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.fhir import metrics
from rnpc_gateway.fhir.subscriptions import Notification, Tracking, track_events
from rnpc_gateway.tables import RecommendationView, RecordVersion, SubscriptionState
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
