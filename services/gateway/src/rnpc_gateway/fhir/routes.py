"""FHIR R4 routes (/fhir/r4): Bundle ingest, Subscription notifications, GuidanceResponse reads.

Thin handlers: parse → map (pure) → the same accept path as POST /v1/recurrences. Problems are
RFC 9457 problem+json naming the resource and element (`errors`), never a 500.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.fhir import metrics, recovery, store
from rnpc_gateway.fhir.fetch import FhirServerError
from rnpc_gateway.fhir.mapping import Mapped, MappingError, map_bundle
from rnpc_gateway.fhir.output import eqd2_observations, guidance_response, searchset
from rnpc_gateway.fhir.security import FhirBundleWrite, FhirGuidanceRead, FhirNotificationWrite
from rnpc_gateway.fhir.store import Pending
from rnpc_gateway.fhir.subscriptions import parse_notification
from rnpc_gateway.routes import accept
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import PendingFhirEvents, RecommendationView, RecordVersion
from rnpc_gateway.upstream import UpstreamDep
from rnpc_shared.db import utc_now
from rnpc_shared.problems import ProblemError
from rnpc_shared.service import Runtime, RuntimeDep, SessionDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/fhir/r4", tags=["fhir"])
FHIR_JSON = "application/fhir+json"
PATIENT_VIEW_SERVICE = "rnpc-patient-view"


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def mapping_problem(exc: MappingError, path: str) -> ProblemError:
    metrics.FHIR_INGEST.labels(path, "refused").inc()
    first = exc.issues[0]
    return ProblemError(
        422, "FHIR content cannot be used", f"{first.resource} {first.element}: {first.message}",
        type_="https://rnpc.example/problems/fhir-mapping", errors=[i.as_dict() for i in exc.issues],
    )


# Arrays and objects nested deeper than this are refused: FHIR content nests a few tens deep, and
# parsing or validating a deeper one would exhaust Python's recursion limit.
JSON_DEPTH_MAX = 64


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


async def read_json(request: Request) -> Any:
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's limit
        raise ProblemError(400, "Body is not JSON", f"the body must be FHIR JSON ({FHIR_JSON}): {exc}") from exc
    if json_depth(body) > JSON_DEPTH_MAX:
        raise ProblemError(400, "Body nested too deeply", f"arrays and objects may nest at most {JSON_DEPTH_MAX} deep",
                           type_="https://rnpc.example/problems/validation",
                           errors=[{"field": "(body)", "rule": "json_depth", "message": f"nested deeper than {JSON_DEPTH_MAX}"}])
    return body


def settings_of(runtime: Runtime) -> GatewaySettings:
    return runtime.settings  # type: ignore[return-value]


def public_base(request: Request, settings: GatewaySettings) -> str:
    """The URL EHRs call (GATEWAY_CDS_PUBLIC_BASE_URL): a CDS Hooks JWT's `aud` is checked against
    it. Only the dev profile derives it from the request (scheme and Host are the caller's to set,
    and behind a TLS-terminating proxy the scheme is http); elsewhere the gateway refuses to start
    without it, and a request is refused 503 rather than checked against its own Host."""
    if settings.cds_public_base_url:
        return settings.cds_public_base_url.rstrip("/")
    if settings.profile == "dev":
        return str(request.base_url).rstrip("/")
    raise ProblemError(503, "Public base URL not configured", "GATEWAY_CDS_PUBLIC_BASE_URL is not set",
                       type_="https://rnpc.example/problems/configuration")


# A patient reference as the record contract allows one (printable, at most 128), maybe "Patient/"-prefixed.
PatientSearch = Annotated[str | None, Query(min_length=1, max_length=136, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _accepted_body(mapped: Mapped, outcome: str) -> dict[str, Any]:
    record = mapped.record
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "information", "code": "informational",
             "diagnostics": f"recurrence {record.recurrence_id} version {record.version}: {outcome}; see /v1/recurrences/{record.recurrence_id}"},
            *({"severity": "information", "code": "informational", "diagnostics": note} for note in mapped.notes),
        ],
    }


@router.post("", status_code=202)
async def post_bundle(request: Request, runtime: RuntimeDep, auditor: FhirBundleWrite) -> JSONResponse:
    """A transaction / batch / collection Bundle of mCODE resources for one recurrence."""
    try:
        mapped = map_bundle(await read_json(request), source_system=settings_of(runtime).fhir_source_system)
    except MappingError as exc:
        raise mapping_problem(exc, "bundle") from exc
    accepted = await accept(runtime, mapped.record, auditor)
    metrics.FHIR_INGEST.labels("bundle", accepted.outcome).inc()
    location = f"/v1/recurrences/{mapped.record.recurrence_id}"
    return fhir_response(_accepted_body(mapped, accepted.outcome), 202, {"Location": location})


@router.post("/notifications")
async def post_notification(request: Request, session: SessionDep, runtime: RuntimeDep, auditor: FhirNotificationWrite) -> JSONResponse:
    """Subscriptions Backport IG rest-hook endpoint (R4 `history` Bundle). Events missed before
    this notification (an event-number gap) are read back with $events and ingested first. An
    event whose resources cannot be had now is kept and retried (`recovery`), never dropped."""
    settings = settings_of(runtime)
    try:
        notification = parse_notification(await read_json(request))
    except MappingError as exc:
        raise mapping_problem(exc, "notification") from exc
    metrics.SUBSCRIPTION_NOTIFICATIONS.labels(notification.type).inc()
    tracking = await store.note_notification(session, notification)
    numbers = [e.number for e in notification.events if e.number is not None]
    retried = await store.pending_among(session, notification.subscription, numbers)  # sent again: retried now
    # Kept ahead, with the counter that marks them seen: should this request fail before it
    # settles them (a database error, a crash), they are retried when sent again, or by the
    # retry job once the lease ends, never lost.
    ahead = [Pending(first, last, None, "missed; this notification's read-back did not finish") for first, last in tracking.gaps]
    if notification.type == "event-notification":
        ahead += [Pending(e.number, e.number, e.focus, "this notification's ingest did not finish")
                  for e in notification.events if e.focus and e.number is not None and e.number in tracking.fresh]
    claimed = store.keep_pending(session, notification.subscription, ahead,
                                 next_attempt_at=utc_now() + timedelta(seconds=recovery.RETRY_LEASE_S))
    await session.commit()
    recovered = recovery.Outcome()
    budget = settings.fhir_events_recovery_max  # events read back while the EHR waits, all gaps together
    for first, last in tracking.gaps:
        if last - first + 1 > budget:
            recovered.keep(Pending(first, last, None, f"beyond the {settings.fhir_events_recovery_max} read back while the EHR waits"),
                           f"missed events {first}-{last}: beyond the {settings.fhir_events_recovery_max} read back while the EHR waits; "
                           "kept, read back in the background")
            metrics.SUBSCRIPTION_GAP_RECOVERIES.labels("too_many").inc()
        else:
            budget -= last - first + 1
            await recovery.read_back(first, last, notification.subscription, runtime, auditor, recovered)
    own, unread, refused = recovery.Outcome(), [], None
    if notification.type == "event-notification":
        for event in notification.events:
            if not event.focus or not (event.number is None or event.number in tracking.fresh or event.number in retried):
                continue
            try:
                own.accepted.append((event.number, await recovery.ingest_event(notification, event.focus, runtime, auditor)))
            except (FhirServerError, MappingError, ProblemError) as exc:  # answered once the others are settled
                if recovery.refused_for_content(exc):
                    refused = refused or (mapping_problem(exc, "notification") if isinstance(exc, MappingError) else exc)
                    continue
                if event.number is None:  # nothing to keep it by: the EHR's retry is the only one
                    refused = refused or _fhir_server_problem(str(exc))
                    continue
                unread.append(event.number)
                pending, diagnostics = recovery.not_had_now(event.number, event.focus, exc, "event")
                if event.number in retried:  # already kept
                    own.issues.append({"severity": "warning", "code": "incomplete", "diagnostics": diagnostics})
                else:
                    own.keep(pending, diagnostics)
    await _settle(session, notification.subscription, claimed, recovered, own)
    if refused is not None:
        raise refused
    if unread:  # the EHR is told, and may send it again: that retries it at once
        raise _fhir_server_problem(f"event(s) {unread} could not be read from the FHIR server now; "
                                   "they are kept and retried automatically, and again when sent again")
    if notification.type == "event-notification":
        summary = f"event(s) {tracking.fresh or 'without number'} accepted: {', '.join(loc for _, loc in own.accepted) or 'none new'}"
    else:  # handshake / heartbeat / query answers: acknowledged, never ingested themselves
        summary = f"{notification.type} acknowledged"
    if recovered.accepted:
        summary += f"; missed event(s) {[n for n, _ in recovered.accepted]} read back and accepted"
    locations = [loc for _, loc in own.accepted + recovered.accepted]  # the notification's own first
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": summary},
                                                          *recovered.issues, *own.issues]}
    return fhir_response(body, 202 if locations else 200, {"Location": locations[0]} if locations else None)


def _fhir_server_problem(detail: str) -> ProblemError:
    return ProblemError(502, "FHIR server unavailable", detail, type_="https://rnpc.example/problems/fhir-server")


async def _settle(session: AsyncSession, subscription: str, claimed: list[PendingFhirEvents], *outcomes: recovery.Outcome) -> None:
    """In place of the rows kept ahead (`claimed`): keep what could not be had (due at the next
    retry pass); take what was ingested out of what was kept; what it was, on the subscription's state."""
    await store.release(session, claimed)
    pending = [p for o in outcomes for p in o.pending]
    store.keep_pending(session, subscription, pending, next_attempt_at=utc_now())
    await store.resolve_pending(session, subscription, {n for o in outcomes for n, _ in o.accepted if n is not None})
    notes = [i["diagnostics"] for o in outcomes for i in o.issues]
    if notes:
        await store.note_recovery(session, subscription, "; ".join(notes))
    await session.commit()


async def _guidance_entries(
    view: RecommendationView, record: RecordVersion, request: Request, runtime: Runtime, upstream: Any
) -> list[tuple[dict[str, Any], str]]:
    settings = settings_of(runtime)
    module_uri = f"{public_base(request, settings)}/cds-services/{PATIENT_VIEW_SERVICE}"
    recommendation = json.loads(view.body)
    guidance = guidance_response(recommendation, resource_id=str(view.id), patient_ref=record.patient_ref, module_uri=module_uri)
    entries: list[tuple[dict[str, Any], str]] = [(guidance, "match")]
    try:
        scores = await upstream.call("scoring", "POST", "/internal/v1/scores", json=record.record)
    except ProblemError as exc:  # the advice is still shown; the EQD2 figures say why they are absent
        entries.append(({"resourceType": "OperationOutcome", "id": f"eqd2-{view.id}", "issue": [
            {"severity": "warning", "code": "transient", "diagnostics": f"EQD2 observations omitted: {exc.detail}"}]}, "outcome"))
        return entries
    issued = recommendation.get("issued_at") or view.issued_at.isoformat()
    entries += [(obs, "include") for obs in eqd2_observations(scores, patient_ref=record.patient_ref, issued_at=str(issued), id_prefix=str(view.id))]
    return entries


@router.get("/GuidanceResponse")
async def search_guidance(
    request: Request, session: SessionDep, runtime: RuntimeDep, upstream: UpstreamDep, auditor: FhirGuidanceRead,
    subject: PatientSearch = None, patient: PatientSearch = None,
) -> JSONResponse:
    """`?subject=Patient/<id>` (or `patient=<id>`): the current recommendation of each recurrence."""
    wanted = subject or patient
    if not wanted:
        raise ProblemError(400, "Search parameter required", "give subject=Patient/<id> (or patient=<id>)",
                           type_="https://rnpc.example/problems/validation", errors=[{"field": "subject", "rule": "required", "message": "required"}])
    patient_ref = wanted.rsplit("/", 1)[-1]
    entries: list[tuple[dict[str, Any], str]] = []
    for view, record in await store.latest_views_for_patient(session, patient_ref):
        async with auditor.standalone("read", view.recurrence_id, version=view.version):
            entries += await _guidance_entries(view, record, request, runtime, upstream)
    return fhir_response(searchset(entries, f"{public_base(request, settings_of(runtime))}/fhir/r4"))


@router.get("/GuidanceResponse/{resource_id}")
async def read_guidance(resource_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, auditor: FhirGuidanceRead) -> JSONResponse:
    found = await store.view_by_id(session, resource_id)
    if found is None:
        raise ProblemError(404, "GuidanceResponse not found", f"no GuidanceResponse/{resource_id}")
    view, record = found
    async with auditor.standalone("read", view.recurrence_id, version=view.version):
        pass  # the read is recorded before the response
    module_uri = f"{public_base(request, settings_of(runtime))}/cds-services/{PATIENT_VIEW_SERVICE}"
    return fhir_response(guidance_response(json.loads(view.body), resource_id=str(view.id), patient_ref=record.patient_ref, module_uri=module_uri))
