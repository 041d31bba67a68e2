"""Recommendation use cases; the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_recommendation.domain import RULES_VERSION, recommend
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


def outdated(stored: IssuedRecommendation, evidence_version: str) -> bool:
    """Issued under other rules or another evidence base than today's: re-evaluate."""
    return (stored.rules_version, stored.evidence_version) != (RULES_VERSION, evidence_version)


async def issue_for_version(
    session: AsyncSession, payload: EvidenceMatched, *, correlation_id: str, policy: Policy | None = None
) -> Recommendation:
    """Issue one recommendation per record version and rules/evidence versions.

    A re-drive re-emits the stored one; once the rules or the evidence base changed (a
    re-evaluation) a new one is computed and issued, superseding it.
    """
    record = payload.record
    stored = await find_by_version(session, IssuedRecommendation, record.recurrence_id, record.version)
    if stored is not None and not outdated(stored, payload.evidence.evidence_version):
        recommendation = Recommendation.model_validate(stored.recommendation)
    else:
        recommendation = recommend(record, payload.scores, payload.evidence, issued_at=utc_now(), policy=policy)
        columns: dict[str, Any] = {
            "status": recommendation.status,
            "input_hash": recommendation.input_hash,
            "rules_version": recommendation.versions.rules,
            "models_version": recommendation.versions.models,
            "evidence_version": recommendation.versions.evidence,
            "recommendation": recommendation.model_dump(mode="json"),
            "issued_at": recommendation.issued_at,
        }
        if stored is None:
            stored = IssuedRecommendation(recurrence_id=record.recurrence_id, version=record.version, **columns)
        else:  # a re-evaluation: today's rules or evidence replace the outdated advice
            stored.sqlmodel_update(columns)
        session.add(stored)
    emit(
        session,
        service="recommendation",
        topic=TOPIC_RECOMMENDATION_ISSUED,
        subject=record.recurrence_id,
        data=RecommendationIssued(recommendation=recommendation, record_summary=summarise(record)).model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    return recommendation
