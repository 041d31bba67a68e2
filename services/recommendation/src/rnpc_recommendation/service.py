"""Recommendation use cases; the caller owns the transaction."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_recommendation.domain import recommend
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.tables import IssuedRecommendation
from rnpc_shared.contracts.events import (
    TOPIC_RECOMMENDATION_ISSUED,
    EvidenceMatched,
    RecommendationIssued,
    RecordSummary,
)
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.db import find_by_version, utc_now
from rnpc_shared.kafka.outbox import emit


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


async def issue_for_version(
    session: AsyncSession, payload: EvidenceMatched, *, correlation_id: str, policy: Policy | None = None
) -> Recommendation:
    """Issue one recommendation per record version (a re-drive re-emits the stored one)."""
    record = payload.record
    stored = await find_by_version(session, IssuedRecommendation, record.recurrence_id, record.version)
    if stored is not None:
        recommendation = Recommendation.model_validate(stored.recommendation)
    else:
        recommendation = recommend(record, payload.scores, payload.evidence, issued_at=utc_now(), policy=policy)
        session.add(
            IssuedRecommendation(
                recurrence_id=record.recurrence_id,
                version=record.version,
                status=recommendation.status,
                input_hash=recommendation.input_hash,
                rules_version=recommendation.versions.rules,
                models_version=recommendation.versions.models,
                evidence_version=recommendation.versions.evidence,
                recommendation=recommendation.model_dump(mode="json"),
                issued_at=recommendation.issued_at,
            )
        )
    emit(
        session,
        service="recommendation",
        topic=TOPIC_RECOMMENDATION_ISSUED,
        subject=record.recurrence_id,
        data=RecommendationIssued(recommendation=recommendation, record_summary=summarise(record)).model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    return recommendation
