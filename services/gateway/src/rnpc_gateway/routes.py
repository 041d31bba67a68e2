"""The public API (/v1): thin handlers that parse, call one use case in one transaction, serialise.

Every route states its scope: `require_scope`, or `audited` on a route that audits (its auditor
is then its scope check too). Every access to a case and every admin action leaves an audit row,
in the same transaction as a write, before a read's response.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, Field
from sqlalchemy.engine import Connection
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway import audit, service
from rnpc_gateway.audit import Auditor, audited
from rnpc_gateway.fhir import store as fhir_store
from rnpc_gateway.limits import ConcurrencyLimit
from rnpc_gateway.upstream import Upstream, UpstreamDep
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
from rnpc_shared.problems import ProblemError
from rnpc_shared.service import Runtime, RuntimeDep, SessionDep

router = APIRouter(prefix="/v1")

RecurrenceIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=RECURRENCE_ID_PATTERN), AfterValidator(not_dot_segment)
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_REDRIVE_AGE_S = 366 * 24 * 3600.0  # a year: bounds the timedelta (larger values overflow it)


async def accept(runtime: Runtime, record: RecurrenceRecord, auditor: Auditor) -> service.Accepted:
    """Every HTTP ingest path (native JSON, FHIR Bundle, Subscription): the version, its event and
    its audit row in one transaction (group-committed with concurrent requests' writes), then relay."""
    correlation_id = correlation_id_var.get() or ""
    limit = runtime.settings.kafka_max_message_bytes

    def write(connection: Connection) -> service.Accepted:
        with Session(bind=connection) as session:
            accepted = service.accept_record(session, record, correlation_id=correlation_id, max_event_bytes=limit)
            session.flush()
        return accepted

    accepted = await auditor.write(
        "create", record.recurrence_id, write, version=record.version, status=202, detail=lambda a: a.outcome
    )
    if accepted.outcome is not service.Acceptance.duplicate and runtime.relay is not None:
        runtime.relay.notify()
    metrics.RECURRENCES_ACCEPTED.labels("gateway", accepted.outcome).inc()
    return accepted


@router.post("/recurrences", status_code=202, tags=["recurrences"])
async def post_recurrence(record: RecurrenceRecord, runtime: RuntimeDep, response: Response, auditor: Annotated[Auditor, audited(SCOPE_RECORD_WRITE)]) -> dict[str, Any]:
    accepted = await accept(runtime, record, auditor)
    location = f"/v1/recurrences/{record.recurrence_id}"
    response.headers["Location"] = location
    return {
        "recurrence_id": record.recurrence_id,
        "version": record.version,
        "outcome": accepted.outcome,
        "received_at": accepted.received_at,
        "links": {"self": location, "recommendation": f"{location}/recommendation"},
    }


@router.get("/recurrences/{recurrence_id}", tags=["recurrences"])
async def get_recurrence(recurrence_id: RecurrenceIdPath, session: SessionDep, auditor: Annotated[Auditor, audited(SCOPE_RECORD_READ)]) -> dict[str, Any]:
    async with auditor.standalone("read", recurrence_id) as note:
        case = await service.case_view(session, recurrence_id)
        note.version = case["latest_version"]
    return case


@router.get(
    "/recurrences/{recurrence_id}/recommendation",
    tags=["recurrences"],
    response_class=Response,
    responses={200: {"description": "The Recommendation (contracts: rnpc_shared.contracts.recommendation)", "content": {"application/json": {}}}},
)
async def get_recommendation(recurrence_id: RecurrenceIdPath, auditor: Annotated[Auditor, audited(SCOPE_RECOMMENDATION_READ)]) -> Response:
    """The latest version's recommendation, served as the stored bytes (validated when issued)."""
    _version, body = await auditor.read("read", recurrence_id, partial(service.latest_recommendation, recurrence_id=recurrence_id))
    return Response(body, media_type="application/json")


@router.post("/scores", tags=["calculators"])
async def post_scores(
    record: RecurrenceRecord,
    params: Annotated[ScoringParameters, Query()],
    upstream: UpstreamDep,
    auditor: Annotated[Auditor, audited(SCOPE_CALCULATOR_RUN)],
) -> Any:
    async with auditor.standalone("execute", record.recurrence_id, version=record.version):
        return await upstream.call("scoring", "POST", "/internal/v1/scores", json=record.model_dump(mode="json"), params=params.model_dump())


@router.get("/schedules", tags=["calculators"], dependencies=[require_scope(SCOPE_CALCULATOR_RUN)])
async def get_schedules(
    upstream: UpstreamDep,
    alpha_beta_gy: Annotated[list[FiniteFloat] | None, Query()] = None,
) -> Any:
    """Radiotherapy schedules of MODELS.md §2 with EQD2 computed (default α/β 10 and 3 Gy)."""
    params = {"alpha_beta_gy": alpha_beta_gy} if alpha_beta_gy else None
    return await upstream.call("scoring", "GET", "/internal/v1/schedules", params=params)


async def evaluate_limit(request: Request) -> ConcurrencyLimit:
    return request.app.state.runtime.extras["evaluate_limit"]


async def evaluate_chain(upstream: Upstream, record_json: bytes, params: dict[str, Any] | None = None) -> tuple[bytes, bytes, bytes]:
    """scores → evidence → recommendation over HTTP, as JSON bytes (also CDS Hooks when nothing is stored)."""
    scores = await upstream.call_raw("scoring", "/internal/v1/scores", body=record_json, params=params)
    evidence = await upstream.call_raw("evidence", "/internal/v1/evidence/match", body=_json_object(record=record_json, scores=scores))
    recommendation = await upstream.call_raw(
        "recommendation", "/internal/v1/recommendations", body=_json_object(record=record_json, scores=scores, evidence=evidence)
    )
    return scores, evidence, recommendation


def _json_object(**members: bytes) -> bytes:
    """Compose a JSON object from members that are already JSON bytes (no parse, no re-dump)."""
    return b"{" + b",".join(b'"' + name.encode() + b'":' + value for name, value in members.items()) + b"}"


@router.post(
    "/evaluate",
    tags=["calculators"],
    response_class=Response, responses={200: {"content": {"application/json": {}}}})
async def post_evaluate(
    record: RecurrenceRecord,
    params: Annotated[ScoringParameters, Query()],
    upstream: UpstreamDep,
    auditor: Annotated[Auditor, audited(SCOPE_CALCULATOR_RUN)],
    limit: Annotated[ConcurrencyLimit, Depends(evaluate_limit)],
) -> Response:
    """The synchronous chain: the same pure functions the Kafka workers run.

    Bounded (503 + Retry-After past `evaluate_max_concurrency`); the upstream answers pass
    through as bytes: the gateway validated the record and parses nothing else.
    """
    with limit.slot():
        record_json = record.model_dump_json().encode()
        async with auditor.standalone("execute", record.recurrence_id, version=record.version):
            scores, evidence, recommendation = await evaluate_chain(upstream, record_json, params.model_dump())
    return Response(_json_object(scores=scores, evidence=evidence, recommendation=recommendation), media_type="application/json")


@router.get("/evidence/studies", tags=["evidence"], dependencies=[require_scope(SCOPE_EVIDENCE_READ)])
async def get_studies(
    upstream: UpstreamDep,
    modality: Modality | None = None,
    outcome: OutcomeMetric | None = None,
    horizon_years: Annotated[float | None, Query(gt=0, le=100, allow_inf_nan=False)] = None,
    endemic: bool | None = None,
) -> Any:
    params = {"modality": modality, "outcome": outcome, "horizon_years": horizon_years, "endemic": endemic}
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/studies", params={k: v for k, v in params.items() if v is not None})


@router.get("/evidence/summary", tags=["evidence"], dependencies=[require_scope(SCOPE_EVIDENCE_READ)])
async def get_summary(upstream: UpstreamDep, modality: Modality | None = None) -> Any:
    params = {"modality": modality} if modality is not None else None
    return await upstream.call("evidence", "GET", "/internal/v1/evidence/summary", params=params)


async def redrive(runtime: Runtime, older_than: timedelta, auditor: Auditor | None = None) -> list[tuple[str, int]]:
    """One re-drive pass in its own transaction: the periodic loop, or the admin route (audited,
    `manual`: it does not use up a case's automatic re-drive budget)."""
    async with runtime.sessions() as session:
        redriven = await service.redrive_overdue(
            session,
            older_than=older_than,
            max_attempts=runtime.settings.redrive_max_attempts,  # type: ignore[attr-defined]
            now=utc_now(),
            manual=auditor is not None,
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


@router.post("/admin/redrive", tags=["admin"])
async def post_redrive(
    runtime: RuntimeDep,
    auditor: Annotated[Auditor, audited(SCOPE_ADMIN)],
    older_than_s: Annotated[float, Query(ge=0, le=MAX_REDRIVE_AGE_S, allow_inf_nan=False)] = 300.0,
) -> dict[str, Any]:
    """Re-send every latest record version still without a recommendation after `older_than_s`
    (does not use up the automatic re-drive budget of a case)."""
    redriven = await redrive(runtime, timedelta(seconds=older_than_s), auditor)
    return {"redriven": [{"recurrence_id": rid, "version": version} for rid, version in redriven]}


PendingId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # the id column is a 32-bit integer on PostgreSQL


@router.get("/admin/fhir/pending-events", tags=["admin"])
async def get_pending_fhir_events(session: SessionDep, auditor: Annotated[Auditor, audited(SCOPE_ADMIN)]) -> dict[str, Any]:
    """FHIR Subscription events known and not ingested yet, kept and retried automatically
    (oldest first, at most 1,000): why, how often tried, when next."""
    async with auditor.standalone("admin", None) as note:
        rows = await fhir_store.list_pending(session, limit=1000)
        note.detail = f"listed {len(rows)} kept FHIR event ranges"
    return {"pending": [row.model_dump(mode="json") for row in rows]}


@router.delete("/admin/fhir/pending-events/{pending_id}", tags=["admin"], status_code=204)
async def dismiss_pending_fhir_events(pending_id: PendingId, session: SessionDep, auditor: Annotated[Auditor, audited(SCOPE_ADMIN)]) -> Response:
    """Stop retrying kept events, e.g. once the EHR sent them another way or confirmed they are
    gone. Audited with what was dismissed."""
    async with auditor.access(session, "admin", None) as note:
        dismissed = await fhir_store.dismiss_pending(session, pending_id)
        if dismissed is None:
            raise ProblemError(404, "Kept events not found", f"no kept FHIR events with id {pending_id}")
        note.detail = f"dismissed kept FHIR events {dismissed}"
    return Response(status_code=204)


AuditLimit = Annotated[int, Query(ge=1, le=1000)]
AfterSeq = Annotated[int, Query(ge=0, le=2**63 - 1, description="return rows after this seq (paging)")]
AuditCaseFilter = Annotated[str | None, Query(min_length=1, max_length=128, pattern=RECURRENCE_ID_PATTERN)]


@router.get("/audit", tags=["audit"])
async def get_audit(
    session: SessionDep, auditor: Annotated[Auditor, audited(SCOPE_AUDIT_READ)], recurrence_id: AuditCaseFilter = None, after_seq: AfterSeq = 0, limit: AuditLimit = 100
) -> dict[str, Any]:
    """The audit trail (optionally of one case), oldest first, with each row's hash chain."""
    async with auditor.standalone("audit", recurrence_id):
        rows = await audit.entries(session, recurrence_id=recurrence_id, after_seq=after_seq, limit=limit)
    return {"entries": [audit.as_json(row) for row in rows], "next_after_seq": rows[-1].seq if rows else after_seq}


@router.get("/audit/fhir", tags=["audit"])
async def get_audit_fhir(
    session: SessionDep, auditor: Annotated[Auditor, audited(SCOPE_AUDIT_READ)], recurrence_id: AuditCaseFilter = None, after_seq: AfterSeq = 0, limit: AuditLimit = 100
) -> dict[str, Any]:
    """The same rows as a FHIR R4 Bundle of AuditEvent resources."""
    async with auditor.standalone("audit", recurrence_id):
        rows = await audit.entries(session, recurrence_id=recurrence_id, after_seq=after_seq, limit=limit)
    return audit.as_fhir_bundle(rows)


async def current_versions(upstream: Upstream) -> service.CurrentVersions:
    """Today's rules and evidence versions, as the services that apply them report them."""
    rules = await upstream.call("recommendation", "GET", "/internal/v1/versions")
    evidence = await upstream.call("evidence", "GET", "/internal/v1/evidence/version")
    return service.CurrentVersions(rules=rules["rules"], evidence=evidence["evidence_version"])


@router.post("/admin/reevaluate", tags=["admin"], status_code=202)
async def post_reevaluate(
    session: SessionDep, runtime: RuntimeDep, upstream: UpstreamDep, auditor: Annotated[Auditor, audited(SCOPE_ADMIN)], dry_run: bool = False
) -> dict[str, Any]:
    """Re-evaluate the latest version of every case whose recommendation predates today's rules or
    evidence version: each goes through the pipeline again and gets a superseding recommendation.
    Progress and the report of what changed: GET /v1/admin/reevaluate?since=<started_at>."""
    current = await current_versions(upstream)
    started_at = utc_now()
    async with auditor.access(session, "admin", None) as note:
        if dry_run:
            targets = await service.outdated_latest(session, current)
        else:
            targets = await service.reevaluate(session, current)
        note.detail = f"reevaluate{' dry-run' if dry_run else ''}: {len(targets)} cases"
    if targets and not dry_run and runtime.relay is not None:
        runtime.relay.notify()
    return {
        "dry_run": dry_run,
        "started_at": started_at,
        "current": {"rules": current.rules, "evidence": current.evidence},
        "cases": len(targets),
    }


def _in_utc_range(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)  # how it is compared in the database
    except OverflowError:
        raise ValueError("the instant is outside the years 1-9999 in UTC") from None
    return value


UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


@router.get("/admin/reevaluate", tags=["admin"])
async def get_reevaluation(
    session: SessionDep, upstream: UpstreamDep, auditor: Annotated[Auditor, audited(SCOPE_ADMIN)], since: UtcInstant
) -> dict[str, Any]:
    """How many latest versions still predate today's versions, and what the superseding
    recommendations since `since` changed (advice = case status, option statuses and ranks, work-up)."""
    current = await current_versions(upstream)
    async with auditor.access(session, "admin", None) as note:
        report = await service.reevaluation_report(session, current, since)
        note.detail = "reevaluation report"
    return report
