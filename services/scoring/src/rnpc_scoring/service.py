"""Scoring use cases; the caller owns the transaction (services never commit)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_scoring.domain import compute_scores
from rnpc_scoring.tables import ScoreSet
from rnpc_shared.contracts.events import TOPIC_SCORES_COMPUTED, RecurrenceRecorded, ScoresComputed
from rnpc_shared.contracts.scores import Scores, ScoringParameters
from rnpc_shared.db import find_by_version
from rnpc_shared.kafka.outbox import emit


async def score_recorded_version(
    session: AsyncSession, payload: RecurrenceRecorded, *, params: ScoringParameters, correlation_id: str
) -> Scores:
    """Score a record version once (a re-drive reuses the stored scores) and stage the event."""
    record = payload.record
    stored = await find_by_version(session, ScoreSet, record.recurrence_id, record.version)
    if stored is not None:
        scores = Scores.model_validate(stored.scores)
    else:
        scores = compute_scores(record, params)
        session.add(
            ScoreSet(
                recurrence_id=record.recurrence_id,
                version=record.version,
                content_hash=record.content_hash(),
                models_version=scores.models_version,
                scores=scores.model_dump(mode="json"),
            )
        )
    emit(
        session,
        service="scoring",
        topic=TOPIC_SCORES_COMPUTED,
        subject=record.recurrence_id,
        data=ScoresComputed(record=record, scores=scores).model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    return scores
