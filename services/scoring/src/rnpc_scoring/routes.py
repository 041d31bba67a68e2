"""Internal compute endpoint (the gateway's synchronous path); same pure function as the worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from rnpc_scoring.domain import compute_scores, schedule_catalogue
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.contracts.scores import Scores, ScoringParameters
from rnpc_shared.problems import ProblemError

router = APIRouter(prefix="/internal/v1", tags=["scoring"])


@router.post("/scores", response_model=Scores)
async def score(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()]) -> Scores:
    return compute_scores(record, params)


@router.get("/schedules")
async def schedules(
    alpha_beta_gy: Annotated[list[float], Query(description="α/β values (Gy) to compute EQD2 at")] = [10.0, 3.0],  # noqa: B006 - FastAPI copies defaults
) -> dict[str, Any]:
    """The radiotherapy schedules of MODELS.md §2, EQD2 and BED computed at each α/β."""
    if not all(0 < value <= 30 for value in alpha_beta_gy):
        raise ProblemError(422, "Invalid request", "alpha_beta_gy must be in (0, 30] Gy", errors=[
            {"field": "query.alpha_beta_gy", "rule": "range", "message": "alpha_beta_gy must be in (0, 30] Gy"}
        ])
    return {"schedules": schedule_catalogue(tuple(alpha_beta_gy))}
