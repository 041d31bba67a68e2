"""The public API (/v1): thin handlers that parse, call one use case in one transaction, serialise.

Every route states its scope (`require_scope`); every access to a case and every admin action
leaves an audit row (`AuditorDep`), in the same transaction as a write, before a read's response.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AfterValidator, Field
from sqlalchemy.exc import IntegrityError

from rnpc_gateway import audit, service
from rnpc_gateway.audit import Auditor, AuditorDep
from rnpc_gateway.upstream import UpstreamDep
from rnpc_shared import metrics
from rnpc_shared.auth import (
    SCOPE_ADMIN,
    SCOPE_AUDIT_READ,
    SCOPE_CALCULATOR_RUN,
    SCOPE_EVIDENCE_READ,
    SCOPE_RECOMMENDATION_READ,
    SCOPE_RECORD_READ,
    SCOPE_RECORD_WRITE,
    require_scope,
)
from rnpc_shared.contracts.evidence import OutcomeMetric
from rnpc_shared.contracts.record import RECURRENCE_ID_PATTERN, Modality, RecurrenceRecord, not_dot_segment
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import utc_now
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.service import Runtime, RuntimeDep, SessionDep
from sqlmodel.ext.asyncio.session import AsyncSession

router = APIRouter(prefix="/v1")

RecurrenceIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=RECURRENCE_ID_PATTERN), AfterValidator(not_dot_segment)
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_REDRIVE_AGE_S = 366 * 24 * 3600.0  # a year: bounds the timedelta (larger values overflow it)


def scope(name: str) -> list[Any]:
    return [Depends(require_scope(name))]


@router.post("/recurrences", status_code=202, tags=["recurrences"], dependencies=scope(SCOPE_RECORD_WRITE))
async def post_recurrence(
    record: RecurrenceRecord, session: SessionDep, runtime: RuntimeDep, response: Response, auditor: AuditorDep
) -> dict[str, Any]:
    correlation_id = correlation_id_var.get() or ""
    async with auditor.access(session, "create", record.recurrence_id, version=record.version, status=202) as note:
        try:
            accepted = await service.accept_record(session, record, correlation_id=correlation_id)
            await session.flush()
        except IntegrityError:
            # The same version arrived concurrently and the other request won: accepted once.
            await session.rollback()
            accepted = await service.accept_record(session, record, correlation_id=correlation_id)
        note.detail = accepted.outcome
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


@router.get("/recurrences/{recurrence_id}", tags=["recurrences"], dependencies=scope(SCOPE_RECORD_READ))
async def get_recurrence(recurrence_id: RecurrenceIdPath, session: SessionDep, auditor: AuditorDep) -> dict[str, Any]:
    async with auditor.access(session, "read", recurrence_id) as note:
        case = await service.case_view(session, recurrence_id)
        note.version = case["latest_version"]
    return case


@router.get("/recurrences/{recurrence_id}/recommendation", tags=["recurrences"], dependencies=scope(SCOPE_RECOMMENDATION_READ))
async def get_recommendation(recurrence_id: RecurrenceIdPath, session: SessionDep, auditor: AuditorDep) -> dict[str, Any]:
    async with auditor.access(session, "read", recurrence_id) as note:
        recommendation = await service.latest_recommendation(session, recurrence_id)
        note.version = recommendation.get("version")
    return recommendation


@router.post("/scores", tags=["calculators"], dependencies=scope(SCOPE_CALCULATOR_RUN))
async def post_scores(
    record: RecurrenceRecord,
    params: Annotated[ScoringParameters, Query()],
    upstream: UpstreamDep,
    session: SessionDep,
    auditor: AuditorDep,
) -> Any:
    async with auditor.access(session, "execute", record.recurrence_id, version=record.version):
        return await upstream.call("scoring", "POST", "/internal/v1/scores", json=record.model_dump(mode="json"), params=params.model_dump())


@router.get("/schedules", tags=["calculators"], dependencies=scope(SCOPE_CALCULATOR_RUN))
async def get_schedules(
    upstream: UpstreamDep,
    alpha_beta_gy: Annotated[list[FiniteFloat] | None, Query()] = None,
) -> Any:
    """Radiotherapy schedules of MODELS.md §2 with EQD2 computed (default α/β 10 and 3 Gy)."""
    params = {"alpha_beta_gy": alpha_beta_gy} if alpha_beta_gy else None
    return await upstream.call("scoring", "GET", "/internal/v1/schedules", params=params)


@router.post("/evaluate", tags=["calculators"], dependencies=scope(SCOPE_CALCULATOR_RUN))
async def post_evaluate(
    record: RecurrenceRecord,
    params: Annotated[ScoringParameters, Query()],
    upstream: UpstreamDep,
    session: SessionDep,
    auditor: AuditorDep,
) -> dict[str, Any]:
    """The synchronous chain: the same pure functions the Kafka workers run."""
    record_json = record.model_dump(mode="json")
    async with auditor.access(session, "execute", record.recurrence_id, version=record.version):
        scores = await upstream.call("scoring", "POST", "/internal/v1/scores", json=record_json, params=params.model_dump())
        evidence = await upstream.call("evidence", "POST", "/internal/v1/evidence/match", json={"record": record_json, "scores": scores})
        recommendation = await upstream.call(
            "recommendation",
            "POST",
            "/internal/v1/recommendations",
            json={"record": record_json, "scores": scores, "evidence": evidence},
        )
    return {"scores": scores, "evidence": evidence, "recommendation": recommendation}


@router.get("/evidence/studies", tags=["evidence"], dependencies=scope(SCOPE_EVIDENCE_READ))
async def get_studies(
    upstream: UpstreamDep,
    modality: Modality | None = None,
    outcome: OutcomeMetric | None = None,
    horizon_years: Annotated[float | None, Query(gt=0, le=100, allow_inf_nan=False)] = None,
    endemic: bool | None = None,
) -> Any:
    params = {"modality": modality, "outcome": outcome, "horizon_years": horizon_years, "endemic": endemic}
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/studies", params={k: v for k, v in params.items() if v is not None})


@router.get("/evidence/summary", tags=["evidence"], dependencies=scope(SCOPE_EVIDENCE_READ))
async def get_summary(upstream: UpstreamDep, modality: Modality | None = None) -> Any:
    params = {"modality": modality} if modality is not None else None
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/summary", params=params)


async def redrive(runtime: Runtime, older_than: timedelta, auditor: Auditor | None = None) -> list[tuple[str, int]]:
    """One re-drive pass in its own transaction (the admin route, audited, and the periodic loop)."""
    async with runtime.sessions() as session:
        redriven = await service.redrive_overdue(
            session,
            older_than=older_than,
            max_attempts=runtime.settings.redrive_max_attempts,  # type: ignore[attr-defined]
            now=utc_now(),
        )
        if auditor is not None:
            await _audit_redrive(session, auditor, redriven)
        await session.commit()
    metrics.REDRIVES.labels("gateway").inc(len(redriven))
    if redriven and runtime.relay is not None:
        runtime.relay.notify()
    return redriven


async def _audit_redrive(session: AsyncSession, auditor: Auditor, redriven: list[tuple[str, int]]) -> None:
    await audit.append(session, auditor.entry("admin", None, None, 200, f"redriven {len(redriven)}"))
    for recurrence_id, version in redriven:
        await audit.append(session, auditor.entry("admin", recurrence_id, version, 200, "redriven"))


@router.post("/admin/redrive", tags=["admin"], dependencies=scope(SCOPE_ADMIN))
async def post_redrive(
    runtime: RuntimeDep,
    auditor: AuditorDep,
    older_than_s: Annotated[float, Query(ge=0, le=MAX_REDRIVE_AGE_S, allow_inf_nan=False)] = 300.0,
) -> dict[str, Any]:
    """Re-send every latest record version still without a recommendation after `older_than_s`."""
    redriven = await redrive(runtime, timedelta(seconds=older_than_s), auditor)
    return {"redriven": [{"recurrence_id": rid, "version": version} for rid, version in redriven]}


AuditLimit = Annotated[int, Query(ge=1, le=1000)]
AfterSeq = Annotated[int, Query(ge=0, le=2**63 - 1, description="return rows after this seq (paging)")]
AuditCaseFilter = Annotated[str | None, Query(min_length=1, max_length=128, pattern=RECURRENCE_ID_PATTERN)]


@router.get("/audit", tags=["audit"], dependencies=scope(SCOPE_AUDIT_READ))
async def get_audit(
    session: SessionDep, auditor: AuditorDep, recurrence_id: AuditCaseFilter = None, after_seq: AfterSeq = 0, limit: AuditLimit = 100
) -> dict[str, Any]:
    """The audit trail (optionally of one case), oldest first, with each row's hash chain."""
    async with auditor.access(session, "audit", recurrence_id):
        rows = await audit.entries(session, recurrence_id=recurrence_id, after_seq=after_seq, limit=limit)
    return {"entries": [audit.as_json(row) for row in rows], "next_after_seq": rows[-1].seq if rows else after_seq}


@router.get("/audit/fhir", tags=["audit"], dependencies=scope(SCOPE_AUDIT_READ))
async def get_audit_fhir(
    session: SessionDep, auditor: AuditorDep, recurrence_id: AuditCaseFilter = None, after_seq: AfterSeq = 0, limit: AuditLimit = 100
) -> dict[str, Any]:
    """The same rows as a FHIR R4 Bundle of AuditEvent resources."""
    async with auditor.access(session, "audit", recurrence_id):
        rows = await audit.entries(session, recurrence_id=recurrence_id, after_seq=after_seq, limit=limit)
    return audit.as_fhir_bundle(rows)
