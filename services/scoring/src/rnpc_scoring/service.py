"""Scoring use cases; the caller owns the transaction (services never commit)."""

from __future__ import annotations

from sqlmodel import Session

from rnpc_scoring.domain import compute_scores
from rnpc_scoring.tables import ScoreSet
from rnpc_shared.contracts.events import TOPIC_SCORES_COMPUTED, RecurrenceRecorded, ScoresComputed
from rnpc_shared.contracts.record import canonical_hash
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import find_by_version, new_row
from rnpc_shared.kafka.consumer import ProvenanceError
from rnpc_shared.kafka.outbox import emit

_SCORE_SETS = ScoreSet.__table__  # type: ignore[attr-defined]


def score_recorded_version(
    session: Session, payload: RecurrenceRecorded, *, params: ScoringParameters, correlation_id: str
) -> None:
    """Score a record version once (a re-drive reuses the stored scores) and stage the event."""
    record = payload.record
    stored = find_by_version(session, ScoreSet, record.recurrence_id, record.version)
    if stored is not None:
        if stored.content_hash != payload.content_hash:
            raise ProvenanceError(
                f"version {record.version} of {record.recurrence_id} was scored for other content "
                f"({stored.content_hash[:12]}, this event {payload.content_hash[:12]})"
            )
        scores_json = stored.scores
    else:
        scores = compute_scores(record, params)
        scores_json = scores.model_dump(mode="json")
        session.connection().execute(
            _SCORE_SETS.insert(),
            new_row(
                ScoreSet,
                recurrence_id=record.recurrence_id,
                version=record.version,
                # The gateway's hash of what it stored, not a re-hash of what this reader understood.
                content_hash=payload.content_hash,
                models_version=scores.models_version,
                scores=scores_json,
            ),
        )
    event = ScoresComputed.model_construct(  # validated values; skip a second validation
        recurrence_id=record.recurrence_id,
        version=record.version,
        content_hash=payload.content_hash,
        scores=scores_json,
        result_hash=canonical_hash(scores_json),
    )
    emit(
        session,
        service="scoring",
        topic=TOPIC_SCORES_COMPUTED,
        subject=record.recurrence_id,
        data=dict(event),
        correlation_id=correlation_id,
    )
