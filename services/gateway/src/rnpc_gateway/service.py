"""Gateway use cases: accept record versions, track stages, keep the read model, re-drive.

The caller (route or consumer) owns the transaction; nothing here commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row, String, and_, bindparam, case, exists, func, or_, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.tables import (
    CaseHead,
    DeadLetterNotice,
    RecommendationView,
    RecordVersion,
    StageState,
    SupersededRecommendation,
)
from rnpc_shared import metrics
from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    CloudEvent,
    RecommendationIssued,
    RecordRef,
    StageResult,
    new_event,
)
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import RecurrenceRecord, read_tolerant
from rnpc_shared.db import Prepared, find_by_version, new_row, of_version, parse_json, utc_now, utf8_bytes, version_params
from rnpc_shared.kafka import stage_inputs
from rnpc_shared.kafka.consumer import DeadLetter, ProvenanceError
from rnpc_shared.kafka.outbox import OUTBOX_INSERT, add_to_outbox, event_json, message_size_bytes, outbox_row
from rnpc_shared.problems import ProblemError

STAGES = ("scoring", "evidence", "recommendation")


class Acceptance(StrEnum):
    new = "new"
    duplicate = "duplicate"
    superseding = "superseding"


@dataclass(frozen=True)
class Accepted:
    outcome: Acceptance
    received_at: datetime  # of the stored version (the first copy's, for a duplicate)


# The hot paths (ingest, stage results) are Core statements built once, run on the session's
# connection: the ORM's per-statement work (autoflush, identity map, entity construction) cost
# several times the statements themselves. Nothing else in a unit reads these rows as entities.
_VERSIONS = RecordVersion.__table__  # type: ignore[attr-defined]
_STATES = StageState.__table__  # type: ignore[attr-defined]
_VIEWS = RecommendationView.__table__  # type: ignore[attr-defined]
_RECORDED = select(_VERSIONS.c.content_hash, _VERSIONS.c.received_at).where(of_version(RecordVersion).whereclause)
_READ_STATES = select(_STATES.c.stage, _STATES.c.state, _STATES.c.result_hash).where(of_version(StageState).whereclause)
# An UPDATE's bound names differ from its columns' (a SET clause reserves the columns' own names).
_OF_STAGE = and_(
    _STATES.c.recurrence_id == bindparam("of_id"), _STATES.c.version == bindparam("of_version"), _STATES.c.stage == bindparam("of_stage")
)
_SET_STATE = update(_STATES).where(_OF_STAGE).values(state="done", result_hash=bindparam("new_hash"), updated_at=bindparam("now"))
_DEAD_LETTERED = (
    update(_STATES)
    .where(_OF_STAGE, _STATES.c.state == "pending")  # a later success is never overwritten
    .values(state="dead_lettered", updated_at=bindparam("now"))
)
_SET_VIEW = (
    update(_VIEWS)
    .where(_VIEWS.c.id == bindparam("view_id"))
    .values(
        status=bindparam("new_status"),
        rules_version=bindparam("new_rules"),
        evidence_version=bindparam("new_evidence"),
        body=bindparam("new_body"),
        issued_at=bindparam("new_issued_at"),
    )
)
_CLAIM_NEW = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(CaseHead)
    .values(recurrence_id=bindparam("rid"), latest_version=bindparam("v"))
    .on_conflict_do_nothing()
    for dialect in (postgresql, sqlite)
}
_CLAIM_NEWER = (
    update(CaseHead)
    .where(col(CaseHead.recurrence_id) == bindparam("rid"), col(CaseHead.latest_version) < bindparam("v"))
    .values(latest_version=bindparam("v"))
)


def _recorded(session: Session, recurrence_id: str, version: int) -> Row[str, datetime] | None:
    """(content_hash, received_at) of a stored version, if any: a stored version never changes,
    so neither an entity nor its record's JSON is needed."""
    return session.connection().execute(_RECORDED, version_params(recurrence_id, version)).first()


def recorded_event(record_json: dict, *, content_hash: str, correlation_id: str) -> CloudEvent:
    """The rnpc.recurrence.recorded.v1 event of a stored version (the only event with the record)."""
    return new_event(
        source="urn:rnpc:gateway",
        type_=TOPIC_RECURRENCE_RECORDED,
        subject=record_json["recurrence_id"],
        data={
            "recurrence_id": record_json["recurrence_id"],
            "version": record_json["version"],
            "content_hash": content_hash,
            "record": record_json,
        },
        correlation_id=correlation_id,
    )


def _conflict(title: str, detail: str, kind: str) -> ProblemError:
    return ProblemError(409, title, detail, type_=f"https://rnpc.example/problems/{kind}")


def _claim_head(session: Session, recurrence_id: str, version: int) -> bool | None:
    """Move the case's head to `version` if it is newer: True (superseding), False (new case),
    None (not newer). One atomic statement each, so concurrent versions cannot both win."""
    connection = session.connection()
    params = {"rid": recurrence_id, "v": version}
    if connection.execute(_CLAIM_NEW[connection.dialect.name], params).rowcount == 1:
        return False
    return True if connection.execute(_CLAIM_NEWER, params).rowcount == 1 else None


def accept_record(
    session: Session, record: RecurrenceRecord, *, correlation_id: str, max_event_bytes: int
) -> Accepted:
    """Store a new record version and stage its event; the same version twice is accepted once.

    Refused before anything is stored: a version older than (or concurrent with a newer) accepted
    one (409), and a record whose event could not fit the broker's message limit (413).
    """
    content_hash = record.content_hash()
    existing = _recorded(session, record.recurrence_id, record.version)
    if existing is not None:
        if existing.content_hash != content_hash:
            raise _conflict(
                "Version already recorded",
                f"version {record.version} of {record.recurrence_id} was recorded with different content; "
                "send the change as a new version",
                "version-conflict",
            )
        return Accepted(Acceptance.duplicate, existing.received_at)
    record_json = record.model_dump(mode="json")
    event = recorded_event(record_json, content_hash=content_hash, correlation_id=correlation_id)
    payload = event_json(event)
    size = message_size_bytes(payload, record.recurrence_id)
    if size > max_event_bytes:
        raise ProblemError(
            413,
            "Record too large for the event stream",
            f"this record's event would be {size} bytes; the broker accepts at most {max_event_bytes}",
            type_="https://rnpc.example/problems/record-too-large",
        )
    superseding = _claim_head(session, record.recurrence_id, record.version)
    if superseding is None:
        existing = _recorded(session, record.recurrence_id, record.version)
        if existing is not None and existing.content_hash == content_hash:  # the same version, concurrently
            return Accepted(Acceptance.duplicate, existing.received_at)
        head = session.get(CaseHead, record.recurrence_id, populate_existing=True)
        latest = head.latest_version if head is not None else record.version
        raise _conflict(
            "Stale version",
            f"version {record.version} is not newer than the latest recorded version {latest}",
            "stale-version",
        )
    connection, received_at = session.connection(), utc_now()
    connection.execute(
        _VERSIONS.insert(),
        new_row(
            RecordVersion,
            recurrence_id=record.recurrence_id,
            version=record.version,
            patient_ref=record.patient_ref,
            content_hash=content_hash,
            record=record_json,
            correlation_id=correlation_id,
            received_at=received_at,
        ),
    )
    connection.execute(
        _STATES.insert(),
        [
            new_row(StageState, recurrence_id=record.recurrence_id, version=record.version, stage=stage, state="pending")
            for stage in STAGES
        ],
    )
    add_to_outbox(session, TOPIC_RECURRENCE_RECORDED, event, payload=payload)
    return Accepted(Acceptance.superseding if superseding else Acceptance.new, received_at)


# Stage results are accepted in pipeline order, each based on the previous stage's result.
PREVIOUS_STAGE = {"evidence": "scoring", "recommendation": "evidence"}
NEXT_STAGE = {previous: stage for stage, previous in PREVIOUS_STAGE.items()}
STAGE_TOPICS = {"scoring": TOPIC_SCORES_COMPUTED, "evidence": TOPIC_EVIDENCE_MATCHED, "recommendation": TOPIC_RECOMMENDATION_ISSUED}
HELD = "held"  # stage_inputs part prefix: a result read before the result it is based on


def _held_prefix(stage: str) -> str:
    return f"{HELD}:{stage[:3]}:"


def _held_part(stage: str, event_id: str) -> str:
    """A held result's part name, within the column's 32 characters on PostgreSQL: the event id by
    its digest (22 base64url characters, 132 bits), as event ids may be any string."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(event_id.encode()).digest())[:22].decode()
    return _held_prefix(stage) + digest


class _NotYet(Exception):
    """The previous stage's result has not been read yet (it travels on another topic)."""


def _check_provenance(session: Session, ref: RecordRef, stage: str, *, based_on: str | None) -> _Provenance:
    """A stage result counts only for a stored version with the same content hash, after the
    previous stage's result it names as its basis. Returns the version's stage states and when
    the version was received."""
    row = _recorded(session, ref.recurrence_id, ref.version)
    if row is None:
        raise ProvenanceError(f"{stage} result for version {ref.version} of {ref.recurrence_id}, which was never recorded")
    if row.content_hash != ref.content_hash:
        raise ProvenanceError(
            f"{stage} result for version {ref.version} of {ref.recurrence_id} is for content "
            f"{ref.content_hash[:12]}, the stored version is {row.content_hash[:12]}"
        )
    states = {s.stage: s for s in session.connection().execute(_READ_STATES, version_params(ref.recurrence_id, ref.version))}
    previous = PREVIOUS_STAGE.get(stage)
    if previous is not None:
        before = states.get(previous)
        if before is None or before.state != "done":
            raise _NotYet(previous)
        if before.result_hash != based_on:
            raise ProvenanceError(
                f"{stage} result for {ref.recurrence_id} v{ref.version} is based on a {previous} result "
                f"({(based_on or '')[:12]}) other than the one recorded ({(before.result_hash or '')[:12]})"
            )
    return _Provenance(states, row.received_at)


@dataclass(frozen=True)
class _Provenance:
    states: dict[str, Row[str, str, str | None]]  # stage → (stage, state, result_hash)
    received_at: datetime

    def mark_done(self, session: Session, ref: RecordRef, stage: str, result_hash: str | None) -> None:
        if stage in self.states:
            params = _stage_params(ref.recurrence_id, ref.version, stage) | {"new_hash": result_hash, "now": utc_now()}
            session.connection().execute(_SET_STATE, params)
        else:  # a version stored before its stage rows were
            row = new_row(StageState, recurrence_id=ref.recurrence_id, version=ref.version, stage=stage, state="done", result_hash=result_hash)
            session.connection().execute(_STATES.insert(), row)


def _stage_params(recurrence_id: str, version: int, stage: str) -> dict[str, Any]:
    return {"of_id": recurrence_id, "of_version": version, "of_stage": stage}


def on_stage_result(session: Session, stage: str, event_id: str, result: StageResult | RecommendationIssued) -> None:
    """A stage event read by the gateway: applied if its provenance holds; held if it overtook
    the result it is based on (applied or refused when that one is read); else dead-lettered.
    A version's results are applied one at a time across replicas, so a result held here is
    always seen by the one it waits for."""
    stage_inputs.lock(session, result)
    try:
        _apply(session, stage, result)
    except _NotYet:
        stage_inputs.hold(session, result, _held_part(stage, event_id), result.model_dump_json())
        return
    _release_held(session, result, NEXT_STAGE.get(stage))


def _read_held(stage: str, data: str) -> StageResult | RecommendationIssued:
    if stage == "recommendation":
        return read_tolerant(RecommendationIssued, parse_json(data))
    return read_tolerant(StageResult, parse_json(data))


def _apply(session: Session, stage: str, result: StageResult | RecommendationIssued) -> None:
    if isinstance(result, RecommendationIssued):
        store_recommendation(session, result)
        return
    provenance = _check_provenance(session, result, stage, based_on=result.scores_hash)
    state = provenance.states.get(stage)
    if state is not None and state.state == "done" and state.result_hash not in (None, result.result_hash):
        raise ProvenanceError(f"a second, different {stage} result for {result.recurrence_id} v{result.version}")
    provenance.mark_done(session, result, stage, result.result_hash)


def _release_held(session: Session, ref: RecordRef, stage: str | None) -> None:
    """Apply (or refuse, with a notice on the case) the results that waited for this one."""
    if stage is None:
        return
    for row in stage_inputs.take(session, ref, _held_prefix(stage)):
        try:
            _apply(session, stage, _read_held(stage, row.data))
        except (ProvenanceError, ValidationError) as exc:
            metrics.PROVENANCE_REJECTED.labels("gateway", STAGE_TOPICS[stage]).inc()
            session.add(
                DeadLetterNotice(
                    recurrence_id=ref.recurrence_id,
                    version=ref.version,
                    stage="gateway",
                    original_topic=STAGE_TOPICS[stage],
                    error_type="provenance",
                    reason=f"{type(exc).__name__}: {exc}"[:4000],
                )
            )
            continue
        _release_held(session, ref, NEXT_STAGE.get(stage))


def _version_of(data: dict | None) -> int | None:
    """The record version an event was about, when its data is still readable."""
    data = data or {}
    if isinstance(data.get("version"), int):
        return data["version"]
    for part in ("record", "recommendation"):
        candidate = data.get(part)
        if isinstance(candidate, dict) and isinstance(candidate.get("version"), int):
            return candidate["version"]
    return None


def note_dead_letter(session: Session, letter: DeadLetter) -> None:
    """Show on the case which stage gave up on one of its events, and why."""
    stage = letter.consumer_group.removeprefix("rnpc-")
    version = _version_of(letter.original_data())  # None too when the copy carries no value
    reason = letter.reason
    if letter.value_omitted:
        where = f" at {letter.original_position}" if letter.original_position else ""
        reason += f" [event not copied to the DLQ ({letter.value_omitted}); it is in {letter.original_topic}{where}]"
    session.add(
        DeadLetterNotice(
            recurrence_id=letter.key,
            version=version,
            stage=stage,
            original_topic=letter.original_topic,
            error_type=letter.error_type,
            reason=reason,
        )
    )
    if version is not None:
        session.connection().execute(_DEAD_LETTERED, _stage_params(letter.key, version, stage) | {"now": utc_now()})


def store_recommendation(session: Session, payload: RecommendationIssued) -> None:
    """Read model: one current recommendation per version, kept as its JSON text, accepted only
    with a checked provenance.

    A re-drive re-emits the same one (ignored); one issued under other rules or evidence
    versions (a re-evaluation) supersedes the stored one, which is kept with what changed.
    """
    recommendation = payload.recommendation
    if (recommendation.recurrence_id, recommendation.version) != (payload.recurrence_id, payload.version):
        raise ProvenanceError("the recommendation is for another record version than its event says")
    provenance = _check_provenance(session, payload, "recommendation", based_on=payload.evidence_hash)
    scoring = provenance.states.get("scoring")
    if scoring is None or scoring.result_hash != payload.scores_hash:
        raise ProvenanceError("the recommendation is based on scores other than the ones recorded")
    connection = session.connection()
    view = find_by_version(session, RecommendationView, recommendation.recurrence_id, recommendation.version)
    if view is not None and not _supersedes(recommendation, view):
        if json.loads(view.body).get("input_hash") != recommendation.input_hash:
            raise ProvenanceError("a second, different recommendation for a version that has one")
    else:  # a first recommendation, or a re-evaluation's under new rules or evidence
        status, versions, body = recommendation.status, recommendation.versions, recommendation.model_dump_json()
        if view is not None:
            session.add(_superseded(view, recommendation))
            connection.execute(
                _SET_VIEW,
                {"view_id": view.id, "new_status": status, "new_rules": versions.rules, "new_evidence": versions.evidence,
                 "new_body": body, "new_issued_at": recommendation.issued_at},
            )
        else:
            connection.execute(
                _VIEWS.insert(),
                new_row(
                    RecommendationView,
                    recurrence_id=recommendation.recurrence_id,
                    version=recommendation.version,
                    status=status,
                    rules_version=versions.rules,
                    evidence_version=versions.evidence,
                    body=body,
                    issued_at=recommendation.issued_at,
                ),
            )
            latency_s = (recommendation.issued_at - provenance.received_at).total_seconds()
            metrics.END_TO_END_LATENCY.labels("gateway").observe(latency_s)
    recorded = provenance.states.get("recommendation")
    provenance.mark_done(session, payload, "recommendation", recorded.result_hash if recorded is not None else None)


def _supersedes(recommendation: Recommendation, view: Row[Any]) -> bool:
    """`view`: the stored recommendation_views row."""
    versions = recommendation.versions
    changed_versions = (versions.rules, versions.evidence) != (view.rules_version, view.evidence_version)
    return changed_versions and recommendation.issued_at >= view.issued_at  # never an older one back


def _superseded(view: Row[Any], new: Recommendation) -> SupersededRecommendation:
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


# Built once, with the id as a parameter: the hot read skips building the statement and its cache
# key on every call. The body is read as the UTF-8 bytes it is sent as (`utf8_bytes`).
_RECOMMENDATION_ID = bindparam("recurrence_id", type_=String)
_LATEST_VERSION = (
    select(func.max(_VERSIONS.c.version).label("version")).where(_VERSIONS.c.recurrence_id == _RECOMMENDATION_ID).subquery()
)
LATEST_RECOMMENDATION = Prepared(
    select(_LATEST_VERSION.c.version, utf8_bytes(_VIEWS.c.body)).select_from(
        _LATEST_VERSION.outerjoin(_VIEWS, (_VIEWS.c.recurrence_id == _RECOMMENDATION_ID) & (_VIEWS.c.version == _LATEST_VERSION.c.version))
    )
)


def latest_recommendation(connection: Connection, recurrence_id: str) -> tuple[int, bytes]:
    """The latest version and its recommendation as stored JSON (UTF-8 bytes): one prepared query,
    no ORM session (run in the unit of work that commits the read's audit row: `Auditor.read`)."""
    [(latest_version, body)] = LATEST_RECOMMENDATION.execute(connection, {"recurrence_id": recurrence_id})
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
    return int(latest_version), bytes(body)


async def redrive_overdue(
    session: AsyncSession,
    *,
    older_than: timedelta,
    max_attempts: int,
    now: datetime,
    manual: bool = False,
    limit: int = 500,
) -> list[tuple[str, int]]:
    """Re-emit latest versions that have no recommendation after `older_than` (new event ids).

    Replicas claim rows with SKIP LOCKED, so each row is re-driven by one of them. A manual
    re-drive (admin) does not use up the automatic budget (`redrive_count`).
    """
    no_recommendation = ~exists().where(
        col(RecommendationView.recurrence_id) == col(RecordVersion.recurrence_id),
        col(RecommendationView.version) == col(RecordVersion.version),
    )
    query = (
        select(RecordVersion)
        .join(
            CaseHead,
            (col(CaseHead.recurrence_id) == RecordVersion.recurrence_id)
            & (col(CaseHead.latest_version) == RecordVersion.version),
        )
        .where(no_recommendation)
        .where(RecordVersion.received_at <= now - older_than)
        .where(col(RecordVersion.last_redrive_at).is_(None) | (col(RecordVersion.last_redrive_at) <= now - older_than))
        .order_by(col(RecordVersion.received_at))
        .limit(limit)
        .with_for_update(of=RecordVersion, skip_locked=True)
    )
    if not manual:
        query = query.where(RecordVersion.redrive_count < max_attempts)
    redriven, events = [], []
    for row in (await session.exec(query)).all():
        events.append(recorded_event(row.record, content_hash=row.content_hash, correlation_id=row.correlation_id))
        if not manual:
            row.redrive_count += 1
        row.last_redrive_at = now
        session.add(row)
        redriven.append((row.recurrence_id, row.version))
    await _add_to_outbox(session, events)
    return redriven


async def _add_to_outbox(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Recorded events re-sent from an async session (re-drive, re-evaluation), in one statement."""
    if events:
        rows = [outbox_row(TOPIC_RECURRENCE_RECORDED, event) for event in events]
        await (await session.connection()).execute(OUTBOX_INSERT, rows)


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


async def outdated_count(session: AsyncSession, current: CurrentVersions) -> int:
    return int((await session.exec(select(func.count()).select_from(_latest_views(current).subquery()))).one())


async def reevaluate(session: AsyncSession, current: CurrentVersions) -> list[tuple[str, int]]:
    """Send the latest version of every case whose advice predates `current` through the pipeline
    again: evidence and recommendation recompute under the new versions and issue a superseding
    recommendation (store_recommendation keeps the old one with what changed)."""
    # A few set-based statements whatever the count (thousands of cases after a release).
    targets = _latest_views(current).subquery()
    rows = (
        await session.exec(
            select(RecordVersion).join(
                targets, and_(col(RecordVersion.recurrence_id) == targets.c.recurrence_id, col(RecordVersion.version) == targets.c.version)
            )
        )
    ).all()
    # The gateway itself asks for new stage results: their provenance is checked afresh.
    await session.exec(
        update(StageState)
        .where(tuple_(col(StageState.recurrence_id), col(StageState.version)).in_(select(targets.c.recurrence_id, targets.c.version)))
        .values(state="pending", result_hash=None, updated_at=utc_now())
    )
    await _add_to_outbox(
        session, [recorded_event(row.record, content_hash=row.content_hash, correlation_id=row.correlation_id) for row in rows]
    )
    return [(row.recurrence_id, row.version) for row in rows]


async def reevaluation_report(session: AsyncSession, current: CurrentVersions, since: datetime) -> dict:
    """Progress and outcome of a re-evaluation started at `since`: what is left, what changed, why."""
    # Counted by the database: a progress display polls this while thousands of superseded
    # bodies (~64 KB each) accumulate, and loading them starved the pipeline it reports on.
    superseded = SupersededRecommendation.__table__  # type: ignore[attr-defined]
    tallies = (
        await session.exec(
            select(superseded.c.reason, func.count(), func.sum(case((superseded.c.changed, 1), else_=0)))
            .where(superseded.c.superseded_at >= since)
            .group_by(superseded.c.reason)
        )
    ).all()
    reasons = {reason: {"superseded": int(count), "changed": int(changed or 0)} for reason, count, changed in tallies}
    return {
        "current": {"rules": current.rules, "evidence": current.evidence},
        "remaining": await outdated_count(session, current),
        "superseded": sum(tally["superseded"] for tally in reasons.values()),
        "changed": sum(tally["changed"] for tally in reasons.values()),
        "by_reason": reasons,
    }
