"""The public API (/v1): thin handlers that parse, call one use case in one transaction, serialise."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime
from sqlalchemy.exc import IntegrityError

from rnpc_gateway import service
from rnpc_gateway.limits import ConcurrencyLimit
from rnpc_gateway.upstream import Upstream, UpstreamDep
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
    try:
        accepted = await service.accept_record(session, record, correlation_id=correlation_id_var.get() or "")
        await session.commit()
    except IntegrityError:
        # The same version arrived concurrently and the other request won: accepted once.
        await session.rollback()
        accepted = await service.accept_record(session, record, correlation_id=correlation_id_var.get() or "")
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


@router.get(
    "/recurrences/{recurrence_id}/recommendation",
    tags=["recurrences"],
    response_class=Response,
    responses={200: {"description": "The Recommendation (contracts: rnpc_shared.contracts.recommendation)", "content": {"application/json": {}}}},
)
async def get_recommendation(recurrence_id: str, session: SessionDep) -> Response:
    """The latest version's recommendation, served as the stored bytes (validated when issued)."""
    return Response(await service.latest_recommendation(session, recurrence_id), media_type="application/json")


@router.post("/scores", tags=["calculators"])
async def post_scores(record: RecurrenceRecord, params: Annotated[ScoringParameters, Query()], upstream: UpstreamDep) -> Any:
    return await upstream.call("scoring", "POST", "/internal/v1/scores", json=record.model_dump(mode="json"), params=params.model_dump())


@router.get("/schedules", tags=["calculators"])
async def get_schedules(upstream: UpstreamDep, alpha_beta_gy: Annotated[list[float] | None, Query()] = None) -> Any:
    """Radiotherapy schedules of MODELS.md §2 with EQD2 computed (default α/β 10 and 3 Gy)."""
    params = {"alpha_beta_gy": alpha_beta_gy} if alpha_beta_gy else None
    return await upstream.call("scoring", "GET", "/internal/v1/schedules", params=params)


def evaluate_limit(request: Request) -> ConcurrencyLimit:
    return request.app.state.runtime.extras["evaluate_limit"]


def _json_object(**members: bytes) -> bytes:
    """Compose a JSON object from members that are already JSON bytes (no parse, no re-dump)."""
    return b"{" + b",".join(b'"' + name.encode() + b'":' + value for name, value in members.items()) + b"}"


@router.post("/evaluate", tags=["calculators"], response_class=Response, responses={200: {"content": {"application/json": {}}}})
async def post_evaluate(
    record: RecurrenceRecord,
    params: Annotated[ScoringParameters, Query()],
    upstream: UpstreamDep,
    limit: Annotated[ConcurrencyLimit, Depends(evaluate_limit)],
) -> Response:
    """The synchronous chain: the same pure functions the Kafka workers run.

    Bounded (503 + Retry-After past `evaluate_max_concurrency`); the upstream answers pass
    through as bytes: the gateway validated the record and parses nothing else.
    """
    with limit.slot():
        record_json = record.model_dump_json().encode()
        scores = await upstream.call_raw("scoring", "/internal/v1/scores", body=record_json, params=params.model_dump())
        evidence = await upstream.call_raw("evidence", "/internal/v1/evidence/match", body=_json_object(record=record_json, scores=scores))
        recommendation = await upstream.call_raw(
            "recommendation", "/internal/v1/recommendations", body=_json_object(record=record_json, scores=scores, evidence=evidence)
        )
    return Response(_json_object(scores=scores, evidence=evidence, recommendation=recommendation), media_type="application/json")


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


async def redrive(runtime: Runtime, older_than: timedelta) -> list[tuple[str, int]]:
    """One re-drive pass in its own transaction (the admin route and the periodic loop)."""
    async with runtime.sessions() as session:
        redriven = await service.redrive_overdue(
            session,
            older_than=older_than,
            max_attempts=runtime.settings.redrive_max_attempts,  # type: ignore[attr-defined]
            now=utc_now(),
        )
        await session.commit()
    metrics.REDRIVES.labels("gateway").inc(len(redriven))
    if redriven and runtime.relay is not None:
        runtime.relay.notify()
    return redriven


@router.post("/admin/redrive", tags=["admin"])
async def post_redrive(runtime: RuntimeDep, older_than_s: Annotated[float, Query(ge=0)] = 300.0) -> dict[str, Any]:
    """Re-send every latest record version still without a recommendation after `older_than_s`."""
    redriven = await redrive(runtime, timedelta(seconds=older_than_s))
    return {"redriven": [{"recurrence_id": rid, "version": version} for rid, version in redriven]}


async def current_versions(upstream: Upstream) -> service.CurrentVersions:
    """Today's rules and evidence versions, as the services that apply them report them."""
    rules = await upstream.call("recommendation", "GET", "/internal/v1/versions")
    evidence = await upstream.call("evidence", "GET", "/internal/v1/evidence/version")
    return service.CurrentVersions(rules=rules["rules"], evidence=evidence["evidence_version"])


@router.post("/admin/reevaluate", tags=["admin"], status_code=202)
async def post_reevaluate(session: SessionDep, runtime: RuntimeDep, upstream: UpstreamDep, dry_run: bool = False) -> dict[str, Any]:
    """Re-evaluate the latest version of every case whose recommendation predates today's rules or
    evidence version: each goes through the pipeline again and gets a superseding recommendation.
    Progress and the report of what changed: GET /v1/admin/reevaluate?since=<started_at>."""
    current = await current_versions(upstream)
    started_at = utc_now()
    if dry_run:
        targets = await service.outdated_latest(session, current)
    else:
        targets = await service.reevaluate(session, current)
        await session.commit()
        if targets and runtime.relay is not None:
            runtime.relay.notify()
    return {
        "dry_run": dry_run,
        "started_at": started_at,
        "current": {"rules": current.rules, "evidence": current.evidence},
        "cases": len(targets),
    }


@router.get("/admin/reevaluate", tags=["admin"])
async def get_reevaluation(session: SessionDep, upstream: UpstreamDep, since: AwareDatetime) -> dict[str, Any]:
    """How many latest versions still predate today's versions, and what the superseding
    recommendations since `since` changed (advice = case status, option statuses and ranks, work-up)."""
    return await service.reevaluation_report(session, await current_versions(upstream), since)
