"""Internal evidence endpoints (served publicly through the gateway)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from rnpc_shared.auth import SCOPE_INTERNAL, require_scope
from rnpc_evidence.domain.catalogue import filter_studies
from rnpc_evidence.domain.matching import match_evidence
from rnpc_evidence.domain.pooling import pooled_summary
from rnpc_evidence.repository import load_base, load_studies
from rnpc_shared.contracts.evidence import EvidenceBundle, OutcomeMetric, PooledEstimate, Study
from rnpc_shared.contracts.record import Modality, RecurrenceRecord, Strict
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import run_sync
from rnpc_shared.service import SessionDep

# Internal routes: only a caller with a service token for this service (audience rnpc-<service>).
router = APIRouter(prefix="/internal/v1/evidence", tags=["evidence"], dependencies=[require_scope(SCOPE_INTERNAL)])


class StudyList(BaseModel):
    evidence_version: str
    count: int
    studies: list[Study]


class Summary(BaseModel):
    evidence_version: str
    method: str = "Random effects, DerSimonian-Laird on the logit scale, 95% CI"
    pooled: list[PooledEstimate]


class MatchRequest(Strict):
    record: RecurrenceRecord
    scores: Scores


@router.get("/studies", response_model=StudyList)
async def list_studies(
    session: SessionDep,
    modality: Modality | None = None,
    outcome: OutcomeMetric | None = None,
    horizon_years: float | None = None,
    endemic: bool | None = None,
) -> StudyList:
    version, studies = await run_sync(session, load_studies)
    selected = filter_studies(studies, modality=modality, metric=outcome, horizon_years=horizon_years, endemic=endemic)
    return StudyList(evidence_version=version, count=len(selected), studies=selected)


@router.get("/summary", response_model=Summary)
async def summary(session: SessionDep, modality: Modality | None = None) -> Summary:
    version, studies = await run_sync(session, load_studies)
    pooled = pooled_summary(studies)
    if modality is not None:
        pooled = [estimate for estimate in pooled if estimate.modality == modality]
    return Summary(evidence_version=version, pooled=pooled)


@router.post("/match", response_model=EvidenceBundle)
async def match(request: MatchRequest, session: SessionDep) -> EvidenceBundle:
    return match_evidence(request.record, request.scores, await run_sync(session, load_base))


@router.get("/version")
async def version(session: SessionDep) -> dict[str, str]:
    """The evidence version matches are made under (a re-evaluation compares it)."""
    return {"evidence_version": (await run_sync(session, load_base)).evidence_version}
