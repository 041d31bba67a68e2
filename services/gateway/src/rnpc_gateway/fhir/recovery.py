"""Subscription events to ingest: mapped from the notification, read from the FHIR server, read
back with $events when missed, or kept to retry.

Every event the gateway learns of ends one of three ways: ingested; refused for its content
(reported to the EHR: a retry would not change it); or kept in `fhir_pending_events` and retried
by `retry_pending` (a periodic job of the gateway, and at once when the EHR sends the event
again) until it is ingested or an admin dismisses it. So a recurrence recorded in the EHR is never
dropped because the FHIR server was down, slow or not configured when its notification came.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rnpc_gateway.audit import Auditor
from rnpc_gateway.fhir import metrics, store
from rnpc_gateway.fhir.fetch import FhirReader, FhirServerError
from rnpc_gateway.fhir.mapping import Issue, MappingError, local_ref, map_validated, validate_resource
from rnpc_gateway.fhir.store import Pending
from rnpc_gateway.fhir.subscriptions import Notification, parse_notification, subtract
from rnpc_gateway.routes import accept
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.tables import PendingFhirEvents
from rnpc_shared import metrics as shared_metrics
from rnpc_shared.auth import Principal
from rnpc_shared.db import utc_now
from rnpc_shared.problems import ProblemError
from rnpc_shared.service import Runtime

log = logging.getLogger(__name__)
# A claimed row is left alone by other replicas this long: longer than a retry takes (at most
# fhir_events_backfill_max / fhir_events_recovery_max reads of fhir_fetch_timeout_s each).
RETRY_LEASE_S = 600.0
RETRY_PRINCIPAL = Principal("urn:rnpc:gateway:fhir-pending-retry", None, frozenset(), "urn:rnpc:gateway")


@dataclass
class Outcome:
    """What handling some events gave: the answer to the EHR, and the events to keep."""

    accepted: list[tuple[int | None, str]] = field(default_factory=list)  # (event number, Location)
    issues: list[dict[str, str]] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)

    def keep(self, pending: Pending, diagnostics: str) -> None:
        self.pending.append(pending)
        self.issues.append({"severity": "warning", "code": "incomplete", "diagnostics": diagnostics})


def fhir_reader(settings: GatewaySettings) -> FhirReader | None:
    """The hospital's FHIR server (GATEWAY_FHIR_SERVER_URL), with its token and timeout; None if unset."""
    if settings.fhir_server_url is None:
        return None
    token = settings.fhir_server_token.get_secret_value() if settings.fhir_server_token else None
    return FhirReader(settings.fhir_server_url, token=token, timeout_s=settings.fhir_fetch_timeout_s)


async def _event_resources(notification: Notification | None, focus: str, settings: GatewaySettings) -> list[dict[str, Any]]:
    """The resources to map for one event: the full-resource payload, else (id-only, a payload
    without the patient, or a retry) read from the configured FHIR server. Raises FhirServerError."""
    resources = notification.resources if notification is not None else []
    has_focus = any(f"{r.get('resourceType')}/{r.get('id')}" == local_ref(focus) for r in resources)
    if has_focus and any(r.get("resourceType") == "Patient" for r in resources):
        return resources
    reader = fhir_reader(settings)
    if reader is None:
        raise MappingError([Issue(focus, "(reference)", "fhir_server_required",
                                  "the notification does not carry the patient's data and no FHIR server is configured (GATEWAY_FHIR_SERVER_URL)")])
    return await reader.patient_record(await reader.read(focus))


async def ingest_event(notification: Notification | None, focus: str, runtime: Runtime, auditor: Auditor) -> str:
    """Map one event's resources and accept the record; its Location. Raises MappingError (its
    content), FhirServerError (the server), ProblemError (the record refused)."""
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    resources = [validate_resource(r, local_ref(focus)) for r in await _event_resources(notification, focus, settings)]
    mapped = map_validated(resources, source_system=settings.fhir_source_system, focus=focus)
    accepted = await accept(runtime, mapped.record, auditor)
    metrics.FHIR_INGEST.labels("notification", accepted.outcome).inc()
    return f"/v1/recurrences/{mapped.record.recurrence_id}"


async def ingest_or_keep(
    notification: Notification | None, number: int, focus: str, runtime: Runtime, auditor: Auditor, outcome: Outcome, label: str
) -> None:
    """One recovered event (read back, or retried): accepted; kept if the server failed; reported
    if refused for its content. `label` names it in the answer ("missed event", "event")."""
    try:
        outcome.accepted.append((number, await ingest_event(notification, focus, runtime, auditor)))
    except (FhirServerError, MappingError, ProblemError) as exc:  # each one's text names what is wrong
        if refused_for_content(exc):
            outcome.issues.append({"severity": "error", "code": "processing", "diagnostics": f"{label} {number} read back but refused: {exc}"})
        else:
            outcome.keep(*not_had_now(number, focus, exc, label))


def not_had_now(number: int, focus: str, exc: Exception, label: str) -> tuple[Pending, str]:
    """The row to keep for an event not ingested now (not for its content), and what to tell."""
    return (Pending(number, number, focus, f"resources not read or stored: {exc}"),
            f"{label} {number}: its resources could not be read or stored now ({exc}); kept, retried automatically")


def refused_for_content(exc: Exception) -> bool:
    """An event refused for what it says (a retry would not change that): a mapping error or a 4xx
    problem. Anything else (the FHIR server, a 5xx) is the moment's: the event is kept."""
    return isinstance(exc, MappingError) or (isinstance(exc, ProblemError) and exc.status < 500)


async def read_back(first: int, last: int, subscription: str, runtime: Runtime, auditor: Auditor, outcome: Outcome) -> None:
    """Read back missed events first..last with $events and ingest them; what is not had is kept.
    Counted by what came of it (rnpc_fhir_subscription_gap_recoveries_total)."""
    metrics.SUBSCRIPTION_GAP_RECOVERIES.labels(await _read_back(first, last, subscription, runtime, auditor, outcome)).inc()


async def _read_back(first: int, last: int, subscription: str, runtime: Runtime, auditor: Auditor, outcome: Outcome) -> str:
    """`read_back`'s work; the metric's outcome: recovered, incomplete, failed or no_server."""
    missed = f"missed events {first}-{last}"
    reader = fhir_reader(runtime.settings)  # type: ignore[arg-type]
    if reader is None:
        outcome.keep(Pending(first, last, None, "no FHIR server configured (GATEWAY_FHIR_SERVER_URL)"),
                     f"{missed}: not read back (no FHIR server configured: GATEWAY_FHIR_SERVER_URL); kept")
        return "no_server"
    try:
        answer = parse_notification(await reader.missed_events(subscription, first, last))
    except (FhirServerError, MappingError) as exc:
        outcome.keep(Pending(first, last, None, f"$events failed: {exc}"), f"{missed}: $events failed ({exc}); kept, retried automatically")
        return "failed"
    if local_ref(answer.subscription) != local_ref(subscription):
        answer = dataclasses.replace(answer, events=[])  # another subscription's events are not ours to ingest
    found = {e.number: e.focus for e in answer.events if e.focus and e.number is not None and first <= e.number <= last}
    for number, focus in sorted(found.items()):
        await ingest_or_keep(answer, number, focus, runtime, auditor, outcome, "missed event")
    absent = subtract(first, last, found)
    for since, until in absent:
        outcome.pending.append(Pending(since, until, None, "not returned by $events"))
    numbers = [n for since, until in absent for n in range(since, until + 1)] if absent else []
    note = f"{missed}: read back with $events" + (f", except {numbers[:50]} (kept, retried automatically)" if absent else "")
    outcome.issues.append({"severity": "warning" if absent else "information", "code": "incomplete", "diagnostics": note})
    return "incomplete" if absent else "recovered"


def backoff_s(attempts: int, settings: GatewaySettings) -> float:
    """Delay before the next retry of a row tried `attempts` times: doubling, capped."""
    return min(settings.fhir_pending_backoff_s * 2 ** max(0, attempts - 1), settings.fhir_pending_backoff_max_s)


async def _retry(row: PendingFhirEvents, runtime: Runtime, auditor: Auditor) -> Outcome:
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    outcome = Outcome()
    if row.focus is not None:
        await ingest_or_keep(None, row.first_event, row.focus, runtime, auditor, outcome, "event")
    elif row.last_event - row.first_event + 1 > settings.fhir_events_backfill_max:
        outcome.pending.append(Pending(row.first_event, row.last_event, None, row.reason))  # an operator's to decide
    else:
        part = settings.fhir_events_recovery_max
        for since in range(row.first_event, row.last_event + 1, part):
            await read_back(since, min(row.last_event, since + part - 1), row.subscription, runtime, auditor, outcome)
    return outcome


async def retry_pending(runtime: Runtime, now: datetime | None = None) -> int:
    """One pass over the kept events that are due: each row is retried and replaced by what is
    still missing (its attempts and age carried on, next try after a doubling delay). Returns how
    many events were ingested."""
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    now = now or utc_now()
    auditor = Auditor(RETRY_PRINCIPAL, "JOB fhir-pending-retry", None, runtime.group_commit)
    async with runtime.sessions() as session:
        rows = await store.claim_due(session, now=now, lease_s=RETRY_LEASE_S)
        await session.commit()
    ingested = 0
    for row in rows:
        outcome = await _retry(row, runtime, auditor)
        async with runtime.sessions() as session:
            current = await session.get(PendingFhirEvents, row.id, with_for_update=True)
            if current is None:  # dismissed, or resolved by a redelivery, meanwhile
                continue
            await session.delete(current)
            store.keep_pending(session, row.subscription, outcome.pending, attempts=row.attempts, noticed_at=row.noticed_at,
                               next_attempt_at=now + timedelta(seconds=backoff_s(row.attempts, settings)))
            await store.resolve_pending(session, row.subscription, {n for n, _ in outcome.accepted if n is not None})
            await session.commit()
        for issue in outcome.issues:
            if issue["severity"] == "error":
                log.warning("kept subscription event refused on retry", extra={"subscription": row.subscription, "outcome": issue["diagnostics"]})
        ingested += len(outcome.accepted)
        metrics.PENDING_EVENTS_INGESTED.inc(len(outcome.accepted))
    await sample_pending(runtime, now)
    return ingested


async def sample_pending(runtime: Runtime, now: datetime) -> None:
    async with runtime.sessions() as session:
        count, oldest_s = await store.pending_summary(session, now)
    metrics.PENDING_EVENTS.set(count)
    metrics.PENDING_OLDEST_AGE.set(oldest_s)


async def pending_retry_loop(runtime: Runtime) -> None:
    """The periodic retry; a failed pass (e.g. the database is down) is logged and counted, and
    the loop goes on."""
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    while True:
        await asyncio.sleep(settings.fhir_pending_retry_interval_s)  # a schedule, not synchronisation
        try:
            await retry_pending(runtime)
        except Exception:
            log.exception("FHIR pending-event retry pass failed; the next pass runs on schedule")
            shared_metrics.BACKGROUND_ERRORS.labels("gateway", "fhir-pending-retry").inc()
