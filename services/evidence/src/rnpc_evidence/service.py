"""Evidence use cases; the caller owns the transaction."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_evidence.domain.matching import match_evidence
from rnpc_evidence.repository import find_match, load_base
from rnpc_evidence.tables import EvidenceMatch
from rnpc_shared.contracts.events import TOPIC_EVIDENCE_MATCHED, EvidenceMatched, ScoresComputed
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.kafka.outbox import emit


async def match_scored_version(session: AsyncSession, payload: ScoresComputed, *, correlation_id: str) -> EvidenceBundle:
    """Attach evidence to a record version once per evidence version and stage the event.

    A re-drive reuses the stored match; after the evidence base changed (a re-evaluation) the
    match is recomputed under the new version and replaces the stored one.
    """
    record = payload.record
    base = await load_base(session)
    stored = await find_match(session, record.recurrence_id, record.version)
    if stored is not None and stored.evidence_version == base.evidence_version:
        bundle = EvidenceBundle.model_validate(stored.bundle)
    else:
        bundle = match_evidence(record, payload.scores, base)
        stored = stored or EvidenceMatch(recurrence_id=record.recurrence_id, version=record.version, evidence_version="", bundle={})
        stored.evidence_version = bundle.evidence_version
        stored.bundle = bundle.model_dump(mode="json")
        session.add(stored)
    emit(
        session,
        service="evidence",
        topic=TOPIC_EVIDENCE_MATCHED,
        subject=record.recurrence_id,
        data=EvidenceMatched(record=record, scores=payload.scores, evidence=bundle).model_dump(mode="json"),
        correlation_id=correlation_id,
    )
    return bundle
