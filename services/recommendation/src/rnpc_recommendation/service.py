"""Recommendation use cases; the caller owns the transaction.

The stage needs the record, its scores and its evidence, each from its own small event: the
parts are joined by (recurrence_id, version, content hash) and the recommendation is issued once,
when the last part arrives. A re-drive's evidence event re-emits the stored recommendation.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_recommendation.domain import recommend
from rnpc_recommendation.tables import IssuedRecommendation
from rnpc_shared.contracts.events import (
    EVENT_READER_CONTEXT,
    TOPIC_RECOMMENDATION_ISSUED,
    EvidenceMatched,
    RecommendationIssued,
    RecordRef,
    RecordSummary,
    RecurrenceRecorded,
    ScoresComputed,
)
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import find_by_version, utc_now
from rnpc_shared.kafka import stage_inputs
from rnpc_shared.kafka.outbox import emit

RECORD, SCORES, EVIDENCE = "record", "scores", "evidence"


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


async def on_recorded(session: AsyncSession, payload: RecurrenceRecorded, raw: dict[str, Any], *, correlation_id: str) -> None:
    await _collect(session, payload, RECORD, raw["record"], None, correlation_id=correlation_id)


async def on_scored(session: AsyncSession, payload: ScoresComputed, raw: dict[str, Any], *, correlation_id: str) -> None:
    await _collect(session, payload, SCORES, raw["scores"], payload.result_hash, correlation_id=correlation_id)


async def on_matched(session: AsyncSession, payload: EvidenceMatched, raw: dict[str, Any], *, correlation_id: str) -> None:
    stored = await find_by_version(session, IssuedRecommendation, payload.recurrence_id, payload.version)
    if stored is not None:  # a re-drive: re-emit the recommendation issued for this version
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
    await _collect(session, payload, EVIDENCE, raw["evidence"], payload.result_hash, correlation_id=correlation_id)


async def _collect(
    session: AsyncSession,
    ref: RecordRef,
    part: str,
    value: dict[str, Any],
    result_hash: str | None,
    *,
    correlation_id: str,
) -> None:
    if await find_by_version(session, IssuedRecommendation, ref.recurrence_id, ref.version) is not None:
        return  # issued already: only the evidence event re-emits it
    parts = await stage_inputs.gather(session, ref, part, value, result_hash)
    if not parts.has(RECORD, SCORES, EVIDENCE):
        stage_inputs.keep(session, parts)
        return
    record = RecurrenceRecord.model_validate(parts.value(RECORD), context=EVENT_READER_CONTEXT)
    scores = Scores.model_validate(parts.value(SCORES), context=EVENT_READER_CONTEXT)
    evidence = EvidenceBundle.model_validate(parts.value(EVIDENCE), context=EVENT_READER_CONTEXT)
    recommendation = recommend(record, scores, evidence, issued_at=utc_now())
    recommendation_json = recommendation.model_dump(mode="json")
    summary_json = summarise(record).model_dump(mode="json")
    session.add(
        IssuedRecommendation(
            recurrence_id=ref.recurrence_id,
            version=ref.version,
            status=recommendation.status,
            input_hash=recommendation.input_hash,
            rules_version=recommendation.versions.rules,
            models_version=recommendation.versions.models,
            evidence_version=recommendation.versions.evidence,
            recommendation=recommendation_json,
            record_summary=summary_json,
            issued_at=recommendation.issued_at,
        )
    )
    await stage_inputs.discard(session, ref)
    _emit(
        session,
        ref,
        recommendation_json,
        summary_json,
        scores_hash=parts.result_hash(SCORES) or "",
        evidence_hash=parts.result_hash(EVIDENCE) or "",
        correlation_id=correlation_id,
    )


def _emit(
    session: AsyncSession,
    ref: RecordRef,
    recommendation: dict[str, Any],
    summary: dict[str, Any],
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
