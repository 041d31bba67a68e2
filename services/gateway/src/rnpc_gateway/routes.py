"""The public API (/v1): thin handlers that parse, call one use case in one transaction, serialise."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.exc import IntegrityError

from rnpc_gateway import service
from rnpc_gateway.upstream import UpstreamDep
from rnpc_shared import metrics
from rnpc_shared.contracts.evidence import OutcomeMetric
from rnpc_shared.contracts.record import Modality, RecurrenceRecord
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import utc_now
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.service import Runtime, RuntimeDep, SessionDep

router = APIRouter(prefix="/v1")


@router.post("/recurrences", status_code=202, tags=["recurrences"])
async def post_recurrence(record: RecurrenceRecord, session: SessionDep, runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    correlation_id = correlation_id_var.get() or ""
    limit = runtime.settings.kafka_max_message_bytes
    try:
        accepted = await service.accept_record(session, record, correlation_id=correlation_id, max_event_bytes=limit)
        await session.commit()
    except IntegrityError:
        # The same version arrived concurrently and the other request won: accepted once.
        await session.rollback()
        accepted = await service.accept_record(session, record, correlation_id=correlation_id, max_event_bytes=limit)
    if accepted.outcome is not service.Acceptance.duplicate and runtime.relay is not None:
        runtime.relay.notify()
    metrics.RECURRENCES_ACCEPTED.labels("gateway", accepted.outcome).inc()
    location = f"/v1/recurrences/{record.recurrence_id}"
    response.headers["Location"] = location
    return {
        "recurrence_id": record.recurrence_id,
        "version": record.version,
        "outcome": accepted.outcome,
        "received_at": accepted.record_version.received_at,
        "links": {"self": location, "recommendation": f"{location}/recommendation"},
    }


@router.get("/recurrences/{recurrence_id}", tags=["recurrences"])
async def get_recurrence(recurrence_id: str, session: SessionDep) -> dict[str, Any]:
    return await service.case_view(session, recurrence_id)


@router.get("/recurrences/{recurrence_id}/recommendation", tags=["recurrences"])
async def get_recommendation(recurrence_id: str, session: SessionDep) -> dict[str, Any]:
    return await service.latest_recommendation(session, recurrence_id)


@router.post("/scores", tags=["calculators"])
async def post_scores(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()], upstream: UpstreamDep) -> Any:
    return await upstream.call("scoring", "POST", "/internal/v1/scores", json=record.model_dump(mode="json"), params=params.model_dump())


@router.get("/schedules", tags=["calculators"])
async def get_schedules(upstream: UpstreamDep, alpha_beta_gy: Annotated[list[float] | None, Query()] = None) -> Any:
    """Radiotherapy schedules of MODELS.md §2 with EQD2 computed (default α/β 10 and 3 Gy)."""
    params = {"alpha_beta_gy": alpha_beta_gy} if alpha_beta_gy else None
    return await upstream.call("scoring", "GET", "/internal/v1/schedules", params=params)


@router.post("/evaluate", tags=["calculators"])
async def post_evaluate(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()], upstream: UpstreamDep) -> dict[str, Any]:
    """The synchronous chain: the same pure functions the Kafka workers run."""
    record_json = record.model_dump(mode="json")
    scores = await upstream.call("scoring", "POST", "/internal/v1/scores", json=record_json, params=params.model_dump())
    evidence = await upstream.call("evidence", "POST", "/internal/v1/evidence/match", json={"record": record_json, "scores": scores})
    recommendation = await upstream.call(
        "recommendation",
        "POST",
        "/internal/v1/recommendations",
        json={"record": record_json, "scores": scores, "evidence": evidence},
    )
    return {"scores": scores, "evidence": evidence, "recommendation": recommendation}


@router.get("/evidence/studies", tags=["evidence"])
async def get_studies(
    upstream: UpstreamDep,
    modality: Modality | None = None,
    outcome: OutcomeMetric | None = None,
    horizon_years: float | None = None,
    endemic: bool | None = None,
) -> Any:
    params = {"modality": modality, "outcome": outcome, "horizon_years": horizon_years, "endemic": endemic}
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/studies", params={k: v for k, v in params.items() if v is not None})


@router.get("/evidence/summary", tags=["evidence"])
async def get_summary(upstream: UpstreamDep, modality: Modality | None = None) -> Any:
    params = {"modality": modality} if modality is not None else None
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/summary", params=params)


async def redrive(runtime: Runtime, older_than: timedelta, *, manual: bool = False) -> list[tuple[str, int]]:
    """One re-drive pass in its own transaction (the admin route and the periodic loop)."""
    async with runtime.sessions() as session:
        redriven = await service.redrive_overdue(
            session,
            older_than=older_than,
            max_attempts=runtime.settings.redrive_max_attempts,  # type: ignore[attr-defined]
            now=utc_now(),
            manual=manual,
        )
        await session.commit()
    metrics.REDRIVES.labels("gateway").inc(len(redriven))
    if redriven and runtime.relay is not None:
        runtime.relay.notify()
    return redriven


@router.post("/admin/redrive", tags=["admin"])
async def post_redrive(runtime: RuntimeDep, older_than_s: Annotated[float, Query(ge=0)] = 300.0) -> dict[str, Any]:
    """Re-send every latest record version still without a recommendation after `older_than_s`
    (does not use up the automatic re-drive budget of a case)."""
    redriven = await redrive(runtime, timedelta(seconds=older_than_s), manual=True)
    return {"redriven": [{"recurrence_id": rid, "version": version} for rid, version in redriven]}
