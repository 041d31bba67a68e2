"""Gateway use cases: accept record versions, track stages, keep the read model, re-drive.

The caller (route or consumer) owns the transaction; nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.tables import DeadLetterNotice, RecommendationView, RecordVersion, StageState, SupersededRecommendation
from rnpc_shared import metrics
from rnpc_shared.contracts.events import TOPIC_RECURRENCE_RECORDED, RecommendationIssued, RecurrenceRecorded
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.db import find_by_version, utc_now
from rnpc_shared.kafka.consumer import DeadLetter
from rnpc_shared.kafka.outbox import emit
from rnpc_shared.problems import ProblemError

STAGES = ("scoring", "evidence", "recommendation")


class Acceptance(StrEnum):
    new = "new"
    duplicate = "duplicate"
    superseding = "superseding"


@dataclass(frozen=True)
class Accepted:
    outcome: Acceptance
    record_version: RecordVersion


async def _latest_version(session: AsyncSession, recurrence_id: str) -> int | None:
    return (
        await session.exec(select(func.max(RecordVersion.version)).where(RecordVersion.recurrence_id == recurrence_id))
    ).one()


async def get_version(session: AsyncSession, recurrence_id: str, version: int) -> RecordVersion | None:
    return await find_by_version(session, RecordVersion, recurrence_id, version)


def _emit_recorded(session: AsyncSession, row: RecordVersion) -> None:
    record = RecurrenceRecord.model_validate(row.record)
    emit(
        session,
        service="gateway",
        topic=TOPIC_RECURRENCE_RECORDED,
        subject=row.recurrence_id,
        data=RecurrenceRecorded(record=record, content_hash=row.content_hash).model_dump(mode="json"),
        correlation_id=row.correlation_id,
    )


async def accept_record(session: AsyncSession, record: RecurrenceRecord, *, correlation_id: str) -> Accepted:
    """Store a new record version and stage its event; the same version twice is accepted once."""
    content_hash = record.content_hash()
    existing = await get_version(session, record.recurrence_id, record.version)
    if existing is not None:
        if existing.content_hash != content_hash:
            raise ProblemError(
                409,
                "Version already recorded",
                f"version {record.version} of {record.recurrence_id} was recorded with different content; "
                "send the change as a new version",
                type_="https://rnpc.example/problems/version-conflict",
            )
        return Accepted(Acceptance.duplicate, existing)
    latest = await _latest_version(session, record.recurrence_id)
    if latest is not None and record.version < latest:
        raise ProblemError(
            409,
            "Stale version",
            f"version {record.version} is older than the latest recorded version {latest}",
            type_="https://rnpc.example/problems/stale-version",
        )
    row = RecordVersion(
        recurrence_id=record.recurrence_id,
        version=record.version,
        patient_ref=record.patient_ref,
        content_hash=content_hash,
        record=record.model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    session.add(row)
    for stage in STAGES:
        session.add(StageState(recurrence_id=record.recurrence_id, version=record.version, stage=stage, state="pending"))
    _emit_recorded(session, row)
    return Accepted(Acceptance.superseding if latest is not None else Acceptance.new, row)


async def mark_stage_done(session: AsyncSession, recurrence_id: str, version: int, stage: str) -> None:
    state = await session.get(StageState, (recurrence_id, version, stage))
    if state is None:  # an event for a version this gateway never accepted (e.g. another ingest path)
        state = StageState(recurrence_id=recurrence_id, version=version, stage=stage, state="done")
    state.state = "done"
    state.updated_at = utc_now()
    session.add(state)


def _version_of(data: dict | None) -> int | None:
    """The record version an event was about, when its data is still readable."""
    for part in ("record", "recommendation"):
        candidate = (data or {}).get(part)
        if isinstance(candidate, dict) and isinstance(candidate.get("version"), int):
            return candidate["version"]
    return None


async def note_dead_letter(session: AsyncSession, letter: DeadLetter) -> None:
    """Show on the case which stage gave up on one of its events, and why."""
    stage = letter.consumer_group.removeprefix("rnpc-")
    version = _version_of(letter.original_data())
    session.add(
        DeadLetterNotice(
            recurrence_id=letter.key,
            version=version,
            stage=stage,
            original_topic=letter.original_topic,
            error_type=letter.error_type,
            reason=letter.reason,
        )
    )
    state = None if version is None else await session.get(StageState, (letter.key, version, stage))
    if state is not None and state.state == "pending":  # a later success is never overwritten
        state.state = "dead_lettered"
        state.updated_at = utc_now()
        session.add(state)


async def store_recommendation(session: AsyncSession, payload: RecommendationIssued) -> None:
    """Read model: one current recommendation per version, kept as its JSON text.

    A re-drive re-emits the same one (ignored); one issued under other rules or evidence
    versions (a re-evaluation) supersedes the stored one, which is kept with what changed.
    """
    recommendation = payload.recommendation
    view = await find_by_version(session, RecommendationView, recommendation.recurrence_id, recommendation.version)
    if view is not None:
        if not _supersedes(recommendation, view):
            await mark_stage_done(session, recommendation.recurrence_id, recommendation.version, "recommendation")
            return
        session.add(_superseded(view, recommendation))
    else:
        view = RecommendationView(
            recurrence_id=recommendation.recurrence_id,
            version=recommendation.version,
            status="",
            rules_version="",
            evidence_version="",
            body="",
            issued_at=recommendation.issued_at,
        )
        row = await get_version(session, recommendation.recurrence_id, recommendation.version)
        if row is not None:
            latency_s = (recommendation.issued_at - row.received_at).total_seconds()
            metrics.END_TO_END_LATENCY.labels("gateway").observe(latency_s)
    view.status = recommendation.status
    view.rules_version = recommendation.versions.rules
    view.evidence_version = recommendation.versions.evidence
    view.body = recommendation.model_dump_json()
    view.issued_at = recommendation.issued_at
    session.add(view)
    await mark_stage_done(session, recommendation.recurrence_id, recommendation.version, "recommendation")


def _supersedes(recommendation: Recommendation, view: RecommendationView) -> bool:
    versions = recommendation.versions
    changed_versions = (versions.rules, versions.evidence) != (view.rules_version, view.evidence_version)
    return changed_versions and recommendation.issued_at >= view.issued_at  # never an older one back


def _superseded(view: RecommendationView, new: Recommendation) -> SupersededRecommendation:
    """The stored recommendation as replaced by `new`, with why and whether the advice changed."""
    reasons = []
    if new.versions.rules != view.rules_version:
        reasons.append(f"rules {view.rules_version} → {new.versions.rules}")
    if new.versions.evidence != view.evidence_version:
        reasons.append(f"evidence {view.evidence_version} → {new.versions.evidence}")
    old = Recommendation.model_validate_json(view.body)
    return SupersededRecommendation(
        recurrence_id=view.recurrence_id,
        version=view.version,
        rules_version=view.rules_version,
        evidence_version=view.evidence_version,
        body=view.body,
        issued_at=view.issued_at,
        reason="; ".join(reasons),
        changed=advice_of(old) != advice_of(new),
    )


def advice_of(recommendation: Recommendation) -> tuple[object, ...]:
    """What a clinician acts on: the case status, each option's status and rank, the work-up."""
    options = tuple((o.modality, o.status, o.rank) for o in recommendation.options)
    return (recommendation.status, options, tuple(recommendation.required_workup))


async def case_view(session: AsyncSession, recurrence_id: str) -> dict:
    versions = (
        await session.exec(
            select(RecordVersion).where(RecordVersion.recurrence_id == recurrence_id).order_by(col(RecordVersion.version))
        )
    ).all()
    if not versions:
        raise ProblemError(404, "Recurrence not found", f"no record with recurrence_id {recurrence_id!r}")
    states = (await session.exec(select(StageState).where(StageState.recurrence_id == recurrence_id))).all()
    by_version: dict[int, dict[str, str]] = {}
    for state in states:
        by_version.setdefault(state.version, {})[state.stage] = state.state
    latest = versions[-1]
    notices = (
        await session.exec(
            select(DeadLetterNotice)
            .where(DeadLetterNotice.recurrence_id == recurrence_id)
            .order_by(col(DeadLetterNotice.received_at))
        )
    ).all()
    return {
        "recurrence_id": recurrence_id,
        "patient_ref": latest.patient_ref,
        "latest_version": latest.version,
        "record": latest.record,
        "versions": [
            {
                "version": row.version,
                "received_at": row.received_at,
                "superseded": row.version != latest.version,
                "stages": {"recorded": "done", **by_version.get(row.version, {})},
            }
            for row in versions
        ],
        "dead_letters": [
            {
                "version": n.version,
                "stage": n.stage,
                "original_topic": n.original_topic,
                "error_type": n.error_type,
                "reason": n.reason,
                "received_at": n.received_at,
            }
            for n in notices
        ],
        "links": {"recommendation": f"/v1/recurrences/{recurrence_id}/recommendation"},
    }


async def latest_recommendation(session: AsyncSession, recurrence_id: str) -> tuple[int, str]:
    """The latest version and its recommendation as stored JSON text (one Core query, no ORM rows)."""
    latest = (
        select(func.max(RecordVersion.version).label("version"))
        .where(RecordVersion.recurrence_id == recurrence_id)
        .subquery()
    )
    views = RecommendationView.__table__  # type: ignore[attr-defined]
    statement = select(latest.c.version, views.c.body).select_from(
        latest.outerjoin(views, (views.c.recurrence_id == recurrence_id) & (views.c.version == latest.c.version))
    )
    latest_version, body = (await session.execute(statement)).one()
    if latest_version is None:
        raise ProblemError(404, "Recurrence not found", f"no record with recurrence_id {recurrence_id!r}")
    if body is None:
        # An older version's advice is never shown as current: it was based on superseded data.
        raise ProblemError(
            404,
            "Recommendation not ready",
            f"no recommendation yet for the latest version ({latest_version}) of {recurrence_id}; it is being processed",
            type_="https://rnpc.example/problems/recommendation-pending",
            latest_version=latest_version,
        )
    return int(latest_version), str(body)


async def redrive_overdue(session: AsyncSession, *, older_than: timedelta, max_attempts: int, now: datetime) -> list[tuple[str, int]]:
    """Re-emit latest versions that have no recommendation after `older_than` (new event ids)."""
    latest_versions = (
        select(RecordVersion.recurrence_id, func.max(RecordVersion.version).label("version"))
        .group_by(RecordVersion.recurrence_id)
        .subquery()
    )
    candidates = (
        await session.exec(
            select(RecordVersion)
            .join(
                latest_versions,
                and_(
                    col(RecordVersion.recurrence_id) == latest_versions.c.recurrence_id,
                    col(RecordVersion.version) == latest_versions.c.version,
                ),
            )
            .outerjoin(
                RecommendationView,
                and_(
                    col(RecommendationView.recurrence_id) == col(RecordVersion.recurrence_id),
                    col(RecommendationView.version) == col(RecordVersion.version),
                ),
            )
            .where(col(RecommendationView.id).is_(None))
            .where(RecordVersion.received_at <= now - older_than)
            .where(RecordVersion.redrive_count < max_attempts)
            .order_by(col(RecordVersion.received_at))
        )
    ).all()
    redriven = []
    for row in candidates:
        if row.last_redrive_at is not None and row.last_redrive_at > now - older_than:
            continue  # give the previous re-drive its full deadline
        _emit_recorded(session, row)
        row.redrive_count += 1
        row.last_redrive_at = now
        session.add(row)
        redriven.append((row.recurrence_id, row.version))
    return redriven


@dataclass(frozen=True)
class CurrentVersions:
    rules: str
    evidence: str


def _latest_views(current: CurrentVersions):  # noqa: ANN202 - a SQL statement
    """The read-model row of each case's latest version, when issued under other versions."""
    latest_versions = (
        select(RecordVersion.recurrence_id, func.max(RecordVersion.version).label("version"))
        .group_by(RecordVersion.recurrence_id)
        .subquery()
    )
    return (
        select(RecommendationView.recurrence_id, RecommendationView.version)
        .join(
            latest_versions,
            and_(
                col(RecommendationView.recurrence_id) == latest_versions.c.recurrence_id,
                col(RecommendationView.version) == latest_versions.c.version,
            ),
        )
        .where(
            or_(col(RecommendationView.rules_version) != current.rules, col(RecommendationView.evidence_version) != current.evidence)
        )
    )


async def outdated_latest(session: AsyncSession, current: CurrentVersions) -> list[tuple[str, int]]:
    return [(rid, version) for rid, version in (await session.exec(_latest_views(current))).all()]


async def reevaluate(session: AsyncSession, current: CurrentVersions) -> list[tuple[str, int]]:
    """Send the latest version of every case whose advice predates `current` through the pipeline
    again: evidence and recommendation recompute under the new versions and issue a superseding
    recommendation (store_recommendation keeps the old one with what changed)."""
    targets = await outdated_latest(session, current)
    for recurrence_id, version in targets:
        row = await get_version(session, recurrence_id, version)
        if row is not None:
            _emit_recorded(session, row)
    return targets


async def reevaluation_report(session: AsyncSession, current: CurrentVersions, since: datetime) -> dict:
    """Progress and outcome of a re-evaluation started at `since`: what is left, what changed, why."""
    remaining = len(await outdated_latest(session, current))
    superseded = (
        await session.exec(select(SupersededRecommendation).where(SupersededRecommendation.superseded_at >= since))
    ).all()
    reasons: dict[str, dict[str, int]] = {}
    for row in superseded:
        tally = reasons.setdefault(row.reason, {"superseded": 0, "changed": 0})
        tally["superseded"] += 1
        tally["changed"] += int(row.changed)
    return {
        "current": {"rules": current.rules, "evidence": current.evidence},
        "remaining": remaining,
        "superseded": len(superseded),
        "changed": sum(1 for row in superseded if row.changed),
        "by_reason": reasons,
    }
