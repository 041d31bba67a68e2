"""CDS Hooks 2.0 service: discovery, patient-view, order-select, feedback (at /cds-services).

Cards come from the stored recommendation; when none exists, one is computed synchronously from
the prefetch (a missing prefetch key is fetched with fhirAuthorization, or answered 412; a key
present with null means "no data"; only from a fhirServer of GATEWAY_CDS_FHIR_SERVERS). Requests tolerate unknown fields (`extension`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import bindparam, delete, insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.engine import Connection

from rnpc_gateway.audit import Auditor
from rnpc_gateway.cds.cards import card_basis, not_assessable_card, order_select_cards, patient_view_cards, strip_empty
from rnpc_gateway.cds.jwt_auth import CdsAuthError, IssuerFile, JkuFetcher, VerifiedClient, verify_cds_jwt
from rnpc_gateway.fhir import metrics, store
from rnpc_gateway.fhir.mapping import MappingError, Resource, map_validated, validate_resource
from rnpc_gateway.fhir.routes import public_base
from rnpc_gateway.routes import evaluate_chain
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import CdsFeedback, CdsTokenUse
from rnpc_gateway.upstream import UpstreamDep
from rnpc_shared.auth import Principal
from rnpc_shared.db import Job, utc_now
from rnpc_shared.problems import ProblemError, field_errors
from rnpc_shared.service import Runtime, RuntimeDep, SessionDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])

PATIENT = "{{context.patientId}}"
PREFETCH = {
    "patient": f"Patient/{PATIENT}",
    "conditions": f"Condition?patient={PATIENT}",
    "observations": f"Observation?patient={PATIENT}",
    "procedures": f"Procedure?patient={PATIENT}",
    "imaging": f"ImagingStudy?patient={PATIENT}",  # restaging MRI / PET-CT
    "reports": f"DiagnosticReport?patient={PATIENT}",  # restaging and pathology reports
}
SERVICES: dict[str, dict[str, Any]] = {
    "rnpc-patient-view": {
        "hook": "patient-view", "id": "rnpc-patient-view", "title": "rNPC retreatment advice",
        "description": "Shows the retreatment recommendation for a recurrent nasopharyngeal carcinoma when the chart opens.",
        "prefetch": PREFETCH,
    },
    "rnpc-order-select": {
        "hook": "order-select", "id": "rnpc-order-select", "title": "rNPC retreatment order check",
        "description": "Checks a drafted re-irradiation or salvage surgery order against the retreatment recommendation.",
        "prefetch": PREFETCH,
    },
}


class CdsRequest(BaseModel):
    """A hook call; unknown fields (e.g. `extension`) are tolerated."""

    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: str  # noqa: N815 - the spec's name
    fhirServer: str | None = None  # noqa: N815
    fhirAuthorization: dict[str, Any] | None = None  # noqa: N815
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"  # FHIR R4 `id`


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Coding(_Open):
    display: str | None = None


class CodeableConcept(_Open):
    text: str | None = None
    coding: list[Coding] | None = None


class DraftOrder(_Open):
    resourceType: str | None = None  # noqa: N815
    id: str | None = None
    code: CodeableConcept | None = None


class DraftEntry(_Open):
    resource: DraftOrder | None = None


class DraftOrders(_Open):
    entry: list[DraftEntry] | None = None


class PatientContext(_Open):
    """The hook context, as far as it is read: an odd shape is a 400 naming the field, never a 500."""

    patientId: Annotated[str, StringConstraints(pattern=FHIR_ID)]  # noqa: N815 - spliced into FHIR URLs: a FHIR id only


class OrderSelectContext(PatientContext):
    draftOrders: DraftOrders | None = None  # noqa: N815
    selections: list[str] | None = None


def _context(call: CdsRequest) -> PatientContext:
    model = OrderSelectContext if call.hook == "order-select" else PatientContext
    try:
        return model.model_validate(call.context)
    except ValidationError as exc:
        errors = field_errors([{**e, "loc": ("context", *e["loc"])} for e in exc.errors()])
        raise ProblemError(400, "Invalid hook context", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                           type_="https://rnpc.example/problems/validation", errors=errors) from exc


def _settings(runtime: Runtime) -> GatewaySettings:
    return runtime.settings  # type: ignore[return-value]


def _called_url(request: Request, settings: GatewaySettings) -> str:
    return public_base(request, settings) + request.url.path


def _unauthorised(reason: str, message: str) -> ProblemError:
    metrics.CDS_AUTH_REFUSED.labels(reason).inc()
    return ProblemError(401, "CDS client not authenticated", message, type_="https://rnpc.example/problems/cds-auth", reason=reason)


async def cds_client(request: Request, runtime: RuntimeDep) -> VerifiedClient:
    """Every service and feedback call: a valid JWT from a trusted client. Its jti is recorded by
    the call's own write (see single_use), so a second use is refused."""
    settings = _settings(runtime)
    authorization = request.headers.get("authorization", "")
    if not authorization.lower().startswith("bearer "):
        raise _unauthorised("missing", "Authorization: Bearer <JWT> is required (CDS Hooks client JWT)")
    issuers = runtime.extras.setdefault("cds_issuers", IssuerFile(settings.cds_trusted_issuers_file))
    fetcher = runtime.extras.setdefault("cds_jku", JkuFetcher())
    try:
        return await verify_cds_jwt(
            authorization[7:].strip(), audience=_called_url(request, settings), issuers=issuers.issuers(),
            fetch_jwks=fetcher, leeway_s=settings.cds_jwt_leeway_s, max_lifetime_s=settings.cds_jwt_max_lifetime_s,
        )
    except CdsAuthError as exc:
        raise _unauthorised(exc.reason, str(exc)) from exc


_TOKEN_USES = CdsTokenUse.__table__  # type: ignore[attr-defined]
_SPEND_TOKEN = insert(_TOKEN_USES)  # built once: every CDS call runs it
_DROP_EXPIRED_TOKENS = delete(_TOKEN_USES).where(_TOKEN_USES.c.expires_at < bindparam("now"))


def token_use(client: VerifiedClient) -> Job:
    """The write that spends the token: its (issuer, jti) primary key refuses a second use. Now and
    then expired ids are dropped (a replay after exp fails on exp anyway)."""

    def spend(connection: Connection) -> None:
        connection.execute(_SPEND_TOKEN, {"issuer": client.iss, "jti": client.jti, "expires_at": client.expires_at})
        if random.random() < 0.01:
            connection.execute(_DROP_EXPIRED_TOKENS, {"now": utc_now()})

    return spend


@contextmanager
def single_use(client: VerifiedClient) -> Iterator[None]:
    """Around the write that spends the token: a replay → 401, a database that cannot record it → 503."""
    try:
        yield
    except IntegrityError as exc:
        raise _unauthorised("replay", f"jti {client.jti!r} was already used") from exc
    except OperationalError as exc:  # e.g. the database is unavailable: the client may retry
        raise ProblemError(503, "Try again", "the replay check could not be recorded now", type_="https://rnpc.example/problems/busy") from exc


CdsClientDep = Annotated[VerifiedClient, Depends(cds_client)]


@router.get("")
async def discovery() -> dict[str, Any]:
    """Open: real clients call it once without a JWT, and it holds no patient data."""
    return {"services": list(SERVICES.values())}


def _entries(value: Any) -> list[Resource] | None:
    """A prefetch value: a resource, a (paginated) searchset Bundle, an OperationOutcome, or null;
    None when it is none of these (not an object, or a Bundle whose entry is not an array)."""
    if value is None:
        return []  # "no data"
    if not isinstance(value, dict):
        return None
    if value.get("resourceType") == "Bundle":
        entries = value.get("entry") or []
        if not isinstance(entries, list):
            return None
        return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") != "OperationOutcome"]
    return [] if value.get("resourceType") == "OperationOutcome" else [value]


def _unobtainable(detail: str) -> ProblemError:
    """The CDS Hooks answer when the service cannot obtain the data it needs: 412."""
    return ProblemError(412, "Prefetch unobtainable", detail, type_="https://rnpc.example/problems/cds-prefetch")


async def _prefetched(call: CdsRequest, patient_id: str, settings: GatewaySettings) -> list[Resource]:
    prefetch = call.prefetch or {}
    resources: list[Resource] = []
    missing = [key for key in PREFETCH if key not in prefetch]
    for key in PREFETCH:
        if key in prefetch:
            entries = _entries(prefetch[key])
            if entries is None:  # the client's request is malformed
                raise ProblemError(400, "Invalid prefetch", f"prefetch.{key}: a FHIR resource, a Bundle whose entry is an array, or null",
                                   type_="https://rnpc.example/problems/validation",
                                   errors=[{"field": f"prefetch.{key}", "rule": "fhir_resource", "message": "a FHIR resource, a Bundle or null"}])
            resources += entries
    if not missing:
        return resources
    token = (call.fhirAuthorization or {}).get("access_token")
    if not call.fhirServer or not token:
        raise ProblemError(412, "Prefetch incomplete", f"prefetch {missing} missing and no fhirServer/fhirAuthorization to fetch it",
                           type_="https://rnpc.example/problems/cds-prefetch")
    server = call.fhirServer.rstrip("/")
    if server not in settings.cds_fhir_servers:  # never a URL the client chose: no SSRF
        raise _unobtainable("fhirServer is not a FHIR server this deployment reads from (GATEWAY_CDS_FHIR_SERVERS): send the prefetch")
    async with httpx.AsyncClient(timeout=settings.fhir_fetch_timeout_s) as client:  # redirects are not followed
        for key in missing:
            url = f"{server}/{PREFETCH[key].replace(PATIENT, patient_id)}"  # patient_id is a FHIR id: no path or query
            try:
                response = await client.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
                entries = _entries(response.json()) if response.is_success else None
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # unreachable, not a URL, not JSON
                raise _unobtainable(f"{key}: {type(exc).__name__}") from exc
            if not response.is_success:
                raise _unobtainable(f"{key}: the FHIR server answered {response.status_code}")
            if entries is None:
                raise _unobtainable(f"{key}: the FHIR server's answer is not a FHIR resource or Bundle")
            resources += entries
    return resources


async def _recommendation(call: CdsRequest, patient_id: str, runtime: Runtime, upstream: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(stored or computed recommendation, or None with the reason it cannot be assessed)."""
    stored = await store.latest_body_for_patient(runtime.reads, patient_id)
    if stored is not None:
        return card_basis(stored), None
    settings = _settings(runtime)
    resources = await _prefetched(call, patient_id, settings)
    try:
        mapped = map_validated([validate_resource(r, "prefetch") for r in resources], source_system=settings.fhir_source_system)
    except MappingError as exc:
        if exc.issues[0].rule == "recurrence_condition_required":
            return None, None  # no recurrence in the chart: nothing to say
        return None, "; ".join(f"{i.resource} {i.element}: {i.message}" for i in exc.issues)
    _scores, _evidence, recommendation = await evaluate_chain(upstream, mapped.record.model_dump_json().encode())
    return json.loads(recommendation), None


def _cards(context: PatientContext, recommendation: dict[str, Any] | None, problem: str | None, source_url: str) -> list[dict[str, Any]]:
    if recommendation is None:
        return [not_assessable_card(problem, source_url=source_url)] if problem else []
    if isinstance(context, OrderSelectContext):
        orders = [e.resource for e in (context.draftOrders.entry if context.draftOrders else None) or [] if e.resource]
        selected = set(context.selections or [])
        chosen = [o.model_dump(exclude_none=True) for o in orders if not selected or f"{o.resourceType}/{o.id}" in selected]
        return order_select_cards(recommendation, chosen, source_url=source_url)
    return patient_view_cards(recommendation, source_url=source_url)


@router.post("/{service_id}")
async def call_service(service_id: str, call: CdsRequest, client: CdsClientDep, request: Request, runtime: RuntimeDep, upstream: UpstreamDep) -> JSONResponse:
    service = SERVICES.get(service_id)
    if service is None:
        raise ProblemError(404, "Unknown CDS service", f"no CDS service {service_id!r}")
    if call.hook != service["hook"]:
        raise ProblemError(400, "Wrong hook", f"{service_id} answers {service['hook']}, not {call.hook}",
                           errors=[{"field": "hook", "rule": "service_hook", "message": f"expected {service['hook']}"}])
    auditor = Auditor(Principal(client.iss, client.iss, frozenset(), client.iss), f"POST /cds-services/{service_id}", None, runtime.group_commit)
    with single_use(client):  # the token is spent in the audit row's transaction, before any answer
        async with auditor.standalone("read", None, with_write=token_use(client)) as note:  # audits the true outcome
            note.detail = f"CDS Hooks {call.hook}"
            context = _context(call)
            recommendation, problem = await _recommendation(call, context.patientId, runtime, upstream)
            if recommendation is not None and recommendation.get("recurrence_id"):
                note.recurrence_id, note.version = recommendation["recurrence_id"], recommendation.get("version")
            source_url = f"{public_base(request, _settings(runtime))}/fhir/r4/GuidanceResponse?subject=Patient/{context.patientId}"
            cards = _cards(context, recommendation, problem, source_url)
    metrics.CDS_REQUESTS.labels(service_id, "cards" if cards else "empty").inc()
    return JSONResponse({"cards": strip_empty(cards)})  # plain JSON already: no response-model pass


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: str
    outcome: str
    overrideReason: dict[str, Any] | None = None  # noqa: N815
    acceptedSuggestions: list[Any] | None = None  # noqa: N815
    outcomeTimestamp: AwareDatetime | None = None  # noqa: N815 - an instant: without an offset → 422


class Feedback(BaseModel):
    model_config = ConfigDict(extra="allow")

    feedback: list[FeedbackItem]


@router.post("/{service_id}/feedback")
async def post_feedback(service_id: str, body: Feedback, client: CdsClientDep, session: SessionDep) -> dict[str, Any]:
    if service_id not in SERVICES:
        raise ProblemError(404, "Unknown CDS service", f"no CDS service {service_id!r}")
    for item in body.feedback:
        if item.outcome not in ("accepted", "overridden"):
            raise ProblemError(422, "Invalid feedback", f"outcome {item.outcome!r} is not accepted | overridden",
                               errors=[{"field": "feedback.outcome", "rule": "enum", "message": "accepted | overridden"}])
        session.add(CdsFeedback(
            service_id=service_id, card_uuid=item.card[:64], outcome=item.outcome, override_reason=item.overrideReason,
            accepted_suggestions=item.acceptedSuggestions, outcome_at=item.outcomeTimestamp,
        ))
    with single_use(client):
        await (await session.connection()).run_sync(token_use(client))
        await session.commit()
    for item in body.feedback:
        metrics.CDS_FEEDBACK.labels(service_id, item.outcome).inc()
    return {}
