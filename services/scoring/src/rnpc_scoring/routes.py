"""Internal compute endpoint (the gateway's synchronous path); same pure function as the worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from rnpc_shared.auth import SCOPE_INTERNAL, require_scope
from rnpc_scoring.domain import compute_scores, schedule_catalogue
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.contracts.scores import Scores, ScoringParameters

# Internal routes: only a caller with a service token for this service (audience rnpc-<service>).
router = APIRouter(prefix="/internal/v1", tags=["scoring"], dependencies=[require_scope(SCOPE_INTERNAL)])


@router.post("/scores", response_model=Scores)
async def score(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()]) -> Scores:
    return compute_scores(record, params)


AlphaBetaGy = Annotated[float, Field(gt=0, le=30)]


@router.get("/schedules")
async def schedules(
    alpha_beta_gy: Annotated[list[AlphaBetaGy], Query(description="α/β values (Gy) to compute EQD2 at")] = [10.0, 3.0],  # noqa: B006 - FastAPI copies defaults
) -> dict[str, Any]:
    """The radiotherapy schedules of MODELS.md §2, EQD2 and BED computed at each α/β."""
    return {"schedules": schedule_catalogue(tuple(alpha_beta_gy))}
