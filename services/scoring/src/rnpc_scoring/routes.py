"""Internal compute endpoint (the gateway's synchronous path); same pure function as the worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from rnpc_scoring.domain import compute_scores
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.contracts.scores import Scores, ScoringParameters

router = APIRouter(prefix="/internal/v1", tags=["scoring"])


@router.post("/scores", response_model=Scores)
async def score(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()]) -> Scores:
    return compute_scores(record, params)
