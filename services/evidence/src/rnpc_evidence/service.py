"""Evidence use cases; the caller owns the transaction."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_evidence.domain.matching import match_evidence
from rnpc_evidence.repository import find_match, load_studies
from rnpc_evidence.tables import EvidenceMatch
from rnpc_shared.contracts.events import TOPIC_EVIDENCE_MATCHED, EvidenceMatched, ScoresComputed
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.kafka.outbox import emit


async def match_scored_version(session: AsyncSession, payload: ScoresComputed, *, correlation_id: str) -> EvidenceBundle:
    """Attach evidence to a record version once (a re-drive reuses it) and stage the event."""
    record = payload.record
    stored = await find_match(session, record.recurrence_id, record.version)
    if stored is not None:
        bundle = EvidenceBundle.model_validate(stored.bundle)
    else:
        _, studies = await load_studies(session)
        bundle = match_evidence(record, payload.scores, studies)
        session.add(
            EvidenceMatch(
                recurrence_id=record.recurrence_id,
                version=record.version,
                evidence_version=bundle.evidence_version,
                bundle=bundle.model_dump(mode="json"),
            )
        )
    emit(
        session,
        service="evidence",
        topic=TOPIC_EVIDENCE_MATCHED,
        subject=record.recurrence_id,
        data=EvidenceMatched(record=record, scores=payload.scores, evidence=bundle).model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    return bundle
