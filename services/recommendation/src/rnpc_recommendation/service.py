"""Recommendation use cases; the caller owns the transaction.

The stage needs the record, its scores and its evidence, each from its own small event: the
parts are joined by (recurrence_id, version, content hash) and the recommendation is issued once per
rules and evidence version, when the last part arrives. A re-drive's evidence event re-emits the
stored recommendation; after a rules or evidence release (a re-evaluation re-sends every part) it
is recomputed and supersedes the stored one.

The evidence part is the case's own (its notes); the evidence base it names (version and hash) is
announced once per version on rnpc.evidence.base.v1 and kept here (`bases`). A case whose parts
are all there before its base waits for it, and runs when the base arrives.
"""

from __future__ import annotations

import logging
from types import EllipsisType
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Row, update
from sqlmodel import Session

from rnpc_recommendation import bases
from rnpc_recommendation.domain import RULES_VERSION, recommend
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.tables import IssuedRecommendation
from rnpc_shared.contracts.events import (
    TOPIC_RECOMMENDATION_ISSUED,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecommendationIssued,
    RecordRef,
    RecordSummary,
    RecurrenceRecorded,
    ScoresComputed,
)
from rnpc_shared.contracts.evidence import CaseEvidence
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import find_by_version, new_row, utc_now
from rnpc_shared.kafka import stage_inputs
from rnpc_shared.kafka.outbox import emit

RECORD, SCORES, EVIDENCE = "record", "scores", "evidence"

log = logging.getLogger(__name__)


def summarise(record: RecurrenceRecord) -> RecordSummary:
    return RecordSummary(
        recurrence_id=record.recurrence_id,
        patient_ref=record.patient_ref,
        version=record.version,
        site=record.recurrence.site,
        t_category=record.recurrence.t_category,
        n_category=record.recurrence.n_category,
        m_category=record.recurrence.m_category,
    )


_ISSUED = IssuedRecommendation.__table__  # type: ignore[attr-defined]
Issued = Row[Any]  # a recommendations row (find_by_version)


def outdated(stored: Issued, evidence_version: str) -> bool:
    """Issued under other rules or another evidence base than today's: re-evaluate."""
    return (stored.rules_version, stored.evidence_version) != (RULES_VERSION, evidence_version)


def on_recorded(session: Session, payload: RecurrenceRecorded, *, correlation_id: str, policy: Policy) -> None:
    _collect(session, payload, RECORD, payload.record, None, correlation_id=correlation_id, policy=policy)


def on_scored(session: Session, payload: ScoresComputed, *, correlation_id: str, policy: Policy) -> None:
    _collect(session, payload, SCORES, payload.scores, payload.result_hash, correlation_id=correlation_id, policy=policy)


def on_matched(session: Session, payload: EvidenceMatched, *, correlation_id: str, policy: Policy) -> None:
    stored = find_by_version(session, IssuedRecommendation, payload.recurrence_id, payload.version)
    if stored is not None and not outdated(stored, payload.evidence.evidence_version):
        # a re-drive: re-emit the recommendation issued for this version (the re-sent parts are not needed)
        stage_inputs.discard(session, payload)
        _emit(
            session,
            payload,
            stored.recommendation,
            stored.record_summary,
            scores_hash=payload.scores_hash,
            evidence_hash=payload.result_hash,
            correlation_id=correlation_id,
        )
        return
    _collect(session, payload, EVIDENCE, payload.evidence, payload.result_hash, correlation_id=correlation_id, policy=policy, stored=stored)


def on_base(session: Session, payload: EvidenceBaseAnnounced, *, correlation_id: str, policy: Policy) -> None:
    """Keep the announced base; cases whose parts all came before it run now.

    A waiting case that names this version with other content is left waiting and logged, not
    raised: the error is that case's (its evidence event is refused when it comes again, e.g. by
    a re-drive), and raising here would dead-letter the base every other case needs."""
    if not bases.store(session, payload):
        return  # announced again: nothing waited for it
    named = (payload.base.evidence_version, payload.base_hash)
    for ref in stage_inputs.refs_with(session, EVIDENCE):
        parts = stage_inputs.kept(session, ref)
        if not parts.has(RECORD, SCORES):
            continue
        case_evidence = parts.model(EVIDENCE, CaseEvidence)
        if (case_evidence.evidence_version, case_evidence.base_hash) == named:
            # Traced under the case's correlation id (its evidence event's), not the base's.
            _complete(session, parts, correlation_id=parts.correlation_id(EVIDENCE) or correlation_id, policy=policy)
        elif case_evidence.evidence_version == named[0]:
            log.error(
                "%s version %d names evidence base %s with content %s, announced with content %s: not joined",
                ref.recurrence_id, ref.version, named[0], case_evidence.base_hash[:12], named[1][:12],
            )


def _collect(
    session: Session,
    ref: RecordRef,
    part: str,
    value: BaseModel,
    result_hash: str | None,
    *,
    correlation_id: str,
    policy: Policy,
    stored: Issued | None | EllipsisType = ...,
) -> None:
    """`value` is the arriving part as its event reader validated it (kept until the others come);
    `stored`: this version's recommendation if the caller read it already (`...`: not read)."""
    # Parts are kept even when this version was issued already: only the evidence event tells
    # whether a re-drive re-emits the stored advice or a re-evaluation recomputes it.
    parts = stage_inputs.gather(session, ref, part, value, result_hash, correlation_id=correlation_id)
    if not parts.has(RECORD, SCORES, EVIDENCE):
        stage_inputs.keep(session, parts)
        return
    _complete(session, parts, correlation_id=correlation_id, policy=policy, stored=stored)


def _complete(
    session: Session,
    parts: stage_inputs.Parts,
    *,
    correlation_id: str,
    policy: Policy,
    stored: Issued | None | EllipsisType = ...,
) -> None:
    """All parts are there: recommend, once the evidence base the case's evidence names is here."""
    ref = parts.ref
    case_evidence = parts.model(EVIDENCE, CaseEvidence)
    base = bases.find(session, case_evidence.evidence_version, case_evidence.base_hash)
    if base is None:
        log.warning(
            "%s version %d waits for evidence base %s (not announced here yet)",
            ref.recurrence_id, ref.version, case_evidence.evidence_version,
        )
        stage_inputs.keep(session, parts)
        return
    record = parts.model(RECORD, RecurrenceRecord)
    scores = parts.model(SCORES, Scores)
    evidence = base.bundle(case_evidence.case_notes)
    recommendation = recommend(
        record, scores, evidence, issued_at=utc_now(), policy=policy,
        record_hash=ref.content_hash, scores_hash=parts.result_hash(SCORES),
    )
    summary = summarise(record)
    columns: dict[str, Any] = {
        "status": recommendation.status,
        "input_hash": recommendation.input_hash,
        "rules_version": recommendation.versions.rules,
        "models_version": recommendation.versions.models,
        "evidence_version": recommendation.versions.evidence,
        # The models themselves: the JSON columns and the event serialise each once, in
        # pydantic-core (never to plain values first: ~1.2 ms per recommendation).
        "recommendation": recommendation,
        "record_summary": summary,
        "issued_at": recommendation.issued_at,
    }
    if stored is ...:
        stored = find_by_version(session, IssuedRecommendation, ref.recurrence_id, ref.version)
    if stored is None:
        row = new_row(IssuedRecommendation, recurrence_id=ref.recurrence_id, version=ref.version, **columns)
        session.connection().execute(_ISSUED.insert(), row)
    else:  # a re-evaluation: today's rules or evidence replace the outdated advice
        session.connection().execute(update(_ISSUED).where(_ISSUED.c.id == stored.id).values(columns))
    stage_inputs.discard(session, ref)
    _emit(
        session,
        ref,
        recommendation,
        summary,
        scores_hash=parts.result_hash(SCORES) or "",
        evidence_hash=parts.result_hash(EVIDENCE) or "",
        correlation_id=correlation_id,
    )


def _emit(
    session: Session,
    ref: RecordRef,
    recommendation: BaseModel | dict[str, Any],  # as issued now, or as stored (a re-drive)
    summary: BaseModel | dict[str, Any],
    *,
    scores_hash: str,
    evidence_hash: str,
    correlation_id: str,
) -> None:
    event = RecommendationIssued.model_construct(  # built from validated values
        recurrence_id=ref.recurrence_id,
        version=ref.version,
        content_hash=ref.content_hash,
        recommendation=recommendation,
        record_summary=summary,
        scores_hash=scores_hash,
        evidence_hash=evidence_hash,
    )
    emit(
        session,
        service="recommendation",
        topic=TOPIC_RECOMMENDATION_ISSUED,
        subject=ref.recurrence_id,
        data=dict(event),
        correlation_id=correlation_id,
    )
