"""Evidence use cases; the caller owns the transaction.

The stage needs the record (rnpc.recurrence.recorded.v1) and its scores (rnpc.scores.computed.v1):
both parts are joined by (recurrence_id, version, content hash) and the match runs once per evidence
version, when the second arrives. A re-drive's scores event re-emits the stored match; after the
evidence base changed (a re-evaluation re-sends both parts) the match is recomputed and replaces it.

A case's evidence event carries only what is specific to the case (its notes per modality) and
names the evidence base (studies, pooled figures, general notes: ~80 KB, the same for every case)
by version and content hash. The base is announced once per version on rnpc.evidence.base.v1, in
the transaction of the first case's event on it, and again with each re-driven case.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlmodel import Session

from rnpc_evidence.domain.matching import case_notes
from rnpc_evidence.repository import Loaded, find_match, loaded
from rnpc_evidence.tables import BaseAnnouncement, EvidenceMatch
from rnpc_shared.contracts.evidence import CaseEvidence
from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecordRef,
    RecurrenceRecorded,
    ScoresComputed,
)
from rnpc_shared.contracts.record import RecurrenceRecord, canonical_hash
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import new_row
from rnpc_shared.kafka import stage_inputs
from rnpc_shared.kafka.outbox import emit

RECORD, SCORES = "record", "scores"


_MATCHES = EvidenceMatch.__table__  # type: ignore[attr-defined]
_ANNOUNCEMENTS = BaseAnnouncement.__table__  # type: ignore[attr-defined]
_ANNOUNCED = select(_ANNOUNCEMENTS.c.evidence_version).where(_ANNOUNCEMENTS.c.evidence_version == bindparam("v"))


def _is_current(session: Session, stored: Row[Any] | None) -> bool:
    """Whether the stored match of a version was made under today's evidence base."""
    return stored is not None and stored.evidence_version == loaded(session).base.evidence_version


def on_recorded(session: Session, payload: RecurrenceRecorded, *, correlation_id: str) -> None:
    stored = find_match(session, payload.recurrence_id, payload.version)
    if _is_current(session, stored):
        return  # matched already: the scores event (not the record) re-emits it
    parts = stage_inputs.gather(session, payload, RECORD, payload.record)
    _match_when_complete(session, parts, stored, correlation_id=correlation_id)


def on_scored(session: Session, payload: ScoresComputed, *, correlation_id: str) -> None:
    stored = find_match(session, payload.recurrence_id, payload.version)
    if stored is not None and _is_current(session, stored):  # a re-drive: re-emit what was matched
        _announce(session, loaded(session), correlation_id=correlation_id, again=True)
        _emit(session, payload, stored.evidence, scores_hash=payload.result_hash, correlation_id=correlation_id)
        return
    parts = stage_inputs.gather(session, payload, SCORES, payload.scores, payload.result_hash)
    _match_when_complete(session, parts, stored, correlation_id=correlation_id)


def _match_when_complete(
    session: Session, parts: stage_inputs.Parts, stored: Row[Any] | None, *, correlation_id: str
) -> None:
    """`stored`: this version's match made under an older evidence base, if any (replaced)."""
    if not parts.has(RECORD, SCORES):
        stage_inputs.keep(session, parts)
        return
    record, scores = parts.model(RECORD, RecurrenceRecord), parts.model(SCORES, Scores)
    current = loaded(session)
    _announce(session, current, correlation_id=correlation_id)
    evidence = CaseEvidence(
        evidence_version=current.base.evidence_version,
        base_hash=current.base_hash,
        case_notes=case_notes(record, scores),
    ).model_dump(mode="json")
    ref, columns = parts.ref, {"evidence_version": current.base.evidence_version, "evidence": evidence}
    if stored is None:
        session.connection().execute(_MATCHES.insert(), new_row(EvidenceMatch, recurrence_id=ref.recurrence_id, version=ref.version, **columns))
    else:
        session.connection().execute(update(_MATCHES).where(_MATCHES.c.id == stored.id).values(columns))
    stage_inputs.discard(session, ref)
    _emit(session, ref, evidence, scores_hash=parts.result_hash(SCORES) or "", correlation_id=correlation_id)


def _announce(session: Session, current: Loaded, *, correlation_id: str, again: bool = False) -> None:
    """Put the evidence base in the outbox once per version, before the first case's event on it;
    `again`: also when it was announced before. A re-drive's re-emitted case announces it again:
    if that one announcement never reached the recommendation stage (parked by the relay, or lost
    with an in-memory broker), every case on the version waits for it, and re-driving one is the
    runbook's remedy. A base the stage has already is ignored there.

    One primary-key read per match (not cached in the process: a rolled-back batch would leave a
    cache saying "announced"). Two replicas announcing at once: the second's commit fails on the
    key and its batch is retried event by event, which then finds the row."""
    version = current.base.evidence_version
    if session.connection().execute(_ANNOUNCED, {"v": version}).first() is None:
        row = new_row(BaseAnnouncement, evidence_version=version, base_hash=current.base_hash)
        session.connection().execute(_ANNOUNCEMENTS.insert(), row)  # the batch's next event finds it
    elif not again:
        return
    event = EvidenceBaseAnnounced.model_construct(base=current.base, base_hash=current.base_hash)
    emit(
        session,
        service="evidence",
        topic=TOPIC_EVIDENCE_BASE,
        subject=version,
        data=event.model_dump(mode="json"),
        correlation_id=correlation_id,
    )


def _emit(session: Session, ref: RecordRef, evidence: dict[str, Any], *, scores_hash: str, correlation_id: str) -> None:
    event = EvidenceMatched.model_construct(  # built from validated values
        recurrence_id=ref.recurrence_id,
        version=ref.version,
        content_hash=ref.content_hash,
        evidence=evidence,
        result_hash=canonical_hash(evidence),
        scores_hash=scores_hash,
    )
    emit(
        session,
        service="evidence",
        topic=TOPIC_EVIDENCE_MATCHED,
        subject=ref.recurrence_id,
        data=dict(event),
        correlation_id=correlation_id,
    )
