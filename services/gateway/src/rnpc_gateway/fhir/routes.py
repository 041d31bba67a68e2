"""FHIR R4 routes (/fhir/r4): Bundle ingest, Subscription notifications, GuidanceResponse reads.

Thin handlers: parse → map (pure) → the same accept path as POST /v1/recurrences. Problems are
RFC 9457 problem+json naming the resource and element (`errors`), never a 500.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from rnpc_gateway.fhir import metrics, store
from rnpc_gateway.fhir.fetch import FhirReader, FhirServerError
from rnpc_gateway.fhir.mapping import Issue, Mapped, MappingError, local_ref, map_bundle, map_validated, validate_resource
from rnpc_gateway.fhir.output import eqd2_observations, guidance_response, searchset
from rnpc_gateway.audit import Auditor, AuditorDep
from rnpc_gateway.fhir.security import fhir_bundle_write, fhir_guidance_read, fhir_notification_write
from rnpc_gateway.fhir.subscriptions import Notification, NotificationEvent, parse_notification
from rnpc_gateway.routes import accept
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import RecommendationView, RecordVersion
from rnpc_gateway.upstream import UpstreamDep
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


async def read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ProblemError(400, "Body is not JSON", f"the body must be FHIR JSON ({FHIR_JSON}): {exc}") from exc


def settings_of(runtime: Runtime) -> GatewaySettings:
    return runtime.settings  # type: ignore[return-value]


def public_base(request: Request, settings: GatewaySettings) -> str:
    return (settings.cds_public_base_url or str(request.base_url)).rstrip("/")


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


@router.post("", status_code=202, dependencies=[fhir_bundle_write])
async def post_bundle(request: Request, runtime: RuntimeDep, auditor: AuditorDep) -> JSONResponse:
    """A transaction / batch / collection Bundle of mCODE resources for one recurrence."""
    try:
        mapped = map_bundle(await read_json(request), source_system=settings_of(runtime).fhir_source_system)
    except MappingError as exc:
        raise mapping_problem(exc, "bundle") from exc
    accepted = await accept(runtime, mapped.record, auditor)
    metrics.FHIR_INGEST.labels("bundle", accepted.outcome).inc()
    location = f"/v1/recurrences/{mapped.record.recurrence_id}"
    return fhir_response(_accepted_body(mapped, accepted.outcome), 202, {"Location": location})


def _fhir_reader(base_url: str, settings: GatewaySettings) -> FhirReader:
    """The hospital's FHIR server (GATEWAY_FHIR_SERVER_URL), with its token and timeout."""
    token = settings.fhir_server_token.get_secret_value() if settings.fhir_server_token else None
    return FhirReader(base_url, token=token, timeout_s=settings.fhir_fetch_timeout_s)


async def _event_resources(notification: Notification, focus: str, settings: GatewaySettings) -> list[dict[str, Any]]:
    """The resources to map for one event: the full-resource payload, else (id-only, or a payload
    without the patient) read from the configured FHIR server."""
    resources = notification.resources
    has_focus = any(f"{r.get('resourceType')}/{r.get('id')}" == local_ref(focus) for r in resources)
    if has_focus and any(r.get("resourceType") == "Patient" for r in resources):
        return resources
    if settings.fhir_server_url is None:
        raise MappingError([Issue(focus, "(reference)", "fhir_server_required",
                                  "the notification does not carry the patient's data and no FHIR server is configured (GATEWAY_FHIR_SERVER_URL)")])
    reader = _fhir_reader(settings.fhir_server_url, settings)
    try:
        focus_resource = await reader.read(focus)
        return await reader.patient_record(focus_resource)
    except FhirServerError as exc:
        raise ProblemError(502, "FHIR server unavailable", f"could not read {focus}: {exc}",
                           type_="https://rnpc.example/problems/fhir-server") from exc


async def _read_back(gap: tuple[int, int], subscription: str, settings: GatewaySettings) -> tuple[list[tuple[Notification, NotificationEvent]], dict[str, str]]:
    """The events of a missed range read back with $events (Subscriptions Backport IG), and an
    issue saying what came of it. Never raises: a range not read back is reported, counted (the
    RnpcFhirEventsNotReadBack alert) and logged."""
    first, last = gap
    missed = f"missed events {first}-{last}"
    found: list[tuple[Notification, NotificationEvent]]
    if settings.fhir_server_url is None:
        outcome, note, found = "no_server", f"{missed}: not read back (no FHIR server configured: GATEWAY_FHIR_SERVER_URL)", []
    elif last - first + 1 > settings.fhir_events_recovery_max:
        outcome, note, found = "too_many", f"{missed}: more than {settings.fhir_events_recovery_max} to read back here; use $events", []
    else:
        reader = _fhir_reader(settings.fhir_server_url, settings)
        try:
            answer = parse_notification(await reader.missed_events(subscription, first, last))
        except (FhirServerError, MappingError) as exc:
            outcome, note, found = "failed", f"{missed}: $events failed ({exc})", []
        else:
            if local_ref(answer.subscription) != local_ref(subscription):
                answer = dataclasses.replace(answer, events=[])  # another subscription's events are not ours to ingest
            found = [(answer, e) for e in answer.events if e.focus and e.number is not None and first <= e.number <= last]
            absent = sorted(set(range(first, last + 1)) - {e.number for _, e in found})
            outcome = "incomplete" if absent else "recovered"
            note = f"{missed}: read back with $events" + (f", except {absent}" if absent else "")
    metrics.SUBSCRIPTION_GAP_RECOVERIES.labels(outcome).inc()
    if outcome != "recovered":
        log.warning("missed subscription events not read back", extra={"subscription": subscription, "outcome": note})
    return found, {"severity": "information" if outcome == "recovered" else "warning", "code": "incomplete", "diagnostics": note}


@router.post("/notifications", dependencies=[fhir_notification_write])
async def post_notification(request: Request, session: SessionDep, runtime: RuntimeDep, auditor: AuditorDep) -> JSONResponse:
    """Subscriptions Backport IG rest-hook endpoint (R4 `history` Bundle). Events missed before
    this notification (an event-number gap) are read back with $events and ingested first."""
    settings = settings_of(runtime)
    try:
        notification = parse_notification(await read_json(request))
    except MappingError as exc:
        raise mapping_problem(exc, "notification") from exc
    metrics.SUBSCRIPTION_NOTIFICATIONS.labels(notification.type).inc()
    tracking = await store.note_notification(session, notification)
    await session.commit()  # the counter and any gap are kept even if an event below is refused
    issues: list[dict[str, str]] = []
    locations: list[str] = []  # of the records read back, then of this notification's own
    read_back: list[int | None] = []
    for gap in tracking.gaps:
        found, issue = await _read_back(gap, notification.subscription, settings)
        issues.append(issue)
        for answer, event in found:  # one refused event never keeps out the others
            try:
                locations.append(await _ingest_event(answer, event, runtime, auditor, settings))
                read_back.append(event.number)
            except (MappingError, ProblemError) as exc:  # either one's text names what is wrong
                issues.append({"severity": "error", "code": "processing", "diagnostics": f"missed event {event.number} read back but refused: {exc}"})
    if tracking.gaps:
        await store.note_recovery(session, notification.subscription, "; ".join(i["diagnostics"] for i in issues))
        await session.commit()
    if notification.type == "event-notification":
        own = []
        for event in notification.events:
            if event.focus and (event.number is None or event.number in tracking.fresh):
                try:
                    own.append(await _ingest_event(notification, event, runtime, auditor, settings))
                except MappingError as exc:  # the notification's own event: the answer is a 422
                    raise mapping_problem(exc, "notification") from exc
        summary = f"event(s) {tracking.fresh or 'without number'} accepted: {', '.join(own) or 'none new'}"
        locations = own + locations
    else:  # handshake / heartbeat / query answers: acknowledged, never ingested themselves
        summary = f"{notification.type} acknowledged"
    if read_back:
        summary += f"; missed event(s) {read_back} read back and accepted"
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": summary}, *issues]}
    return fhir_response(body, 202 if locations else 200, {"Location": locations[0]} if locations else None)


async def _ingest_event(
    notification: Notification, event: NotificationEvent, runtime: Runtime, auditor: Auditor, settings: GatewaySettings
) -> str:
    """Map one event's resources and accept the record; its Location. A MappingError is the
    caller's to answer or report."""
    assert event.focus is not None
    resources = [validate_resource(r, local_ref(event.focus)) for r in await _event_resources(notification, event.focus, settings)]
    mapped = map_validated(resources, source_system=settings.fhir_source_system, focus=event.focus)
    accepted = await accept(runtime, mapped.record, auditor)
    metrics.FHIR_INGEST.labels("notification", accepted.outcome).inc()
    return f"/v1/recurrences/{mapped.record.recurrence_id}"


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


@router.get("/GuidanceResponse", dependencies=[fhir_guidance_read])
async def search_guidance(
    request: Request, session: SessionDep, runtime: RuntimeDep, upstream: UpstreamDep, auditor: AuditorDep,
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


@router.get("/GuidanceResponse/{resource_id}", dependencies=[fhir_guidance_read])
async def read_guidance(resource_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, auditor: AuditorDep) -> JSONResponse:
    found = await store.view_by_id(session, resource_id)
    if found is None:
        raise ProblemError(404, "GuidanceResponse not found", f"no GuidanceResponse/{resource_id}")
    view, record = found
    async with auditor.standalone("read", view.recurrence_id, version=view.version):
        pass  # the read is recorded before the response
    module_uri = f"{public_base(request, settings_of(runtime))}/cds-services/{PATIENT_VIEW_SERVICE}"
    return fhir_response(guidance_response(json.loads(view.body), resource_id=str(view.id), patient_ref=record.patient_ref, module_uri=module_uri))
