"""Internal compute endpoint (the gateway's synchronous path); same pure function as the worker."""

from __future__ import annotations

from fastapi import APIRouter

from rnpc_recommendation.domain import RULES_VERSION, recommend
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import RecurrenceRecord, Strict
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import utc_now

router = APIRouter(prefix="/internal/v1", tags=["recommendation"])


class RecommendRequest(Strict):
    record: RecurrenceRecord
    scores: Scores
    evidence: EvidenceBundle


@router.post("/recommendations", response_model=Recommendation)
async def compute_recommendation(request: RecommendRequest) -> Recommendation:
    return recommend(request.record, request.scores, request.evidence, issued_at=utc_now())


@router.get("/versions")
async def versions() -> dict[str, str]:
    """The rules version this service issues under (a re-evaluation compares it)."""
    return {"rules": RULES_VERSION}
