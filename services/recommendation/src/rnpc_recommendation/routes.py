"""Internal compute endpoint (the gateway's synchronous path); same pure function as the worker."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rnpc_shared.auth import SCOPE_INTERNAL, require_scope
from rnpc_recommendation.domain import RULES_VERSION, recommend
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.settings import RecommendationSettings
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_shared.contracts.record import RecurrenceRecord, Strict
from rnpc_shared.contracts.scores import Scores
from rnpc_shared.db import utc_now

# Internal routes: only a caller with a service token for this service (audience rnpc-<service>).
router = APIRouter(prefix="/internal/v1", tags=["recommendation"], dependencies=[require_scope(SCOPE_INTERNAL)])


class RecommendRequest(Strict):
    record: RecurrenceRecord
    scores: Scores
    evidence: EvidenceBundle


@router.post("/recommendations", response_model=Recommendation)
async def compute_recommendation(body: RecommendRequest, request: Request) -> Recommendation:
    settings = request.app.state.runtime.settings
    policy = settings.policy() if isinstance(settings, RecommendationSettings) else Policy()
    return recommend(body.record, body.scores, body.evidence, issued_at=utc_now(), policy=policy)


@router.get("/versions")
async def versions() -> dict[str, str]:
    """The rules version this service issues under (a re-evaluation compares it)."""
    return {"rules": RULES_VERSION}
