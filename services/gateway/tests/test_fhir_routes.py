"""FHIR routes in-process over a real SQLite gateway DB (no broker: the pipeline part is in
tests/e2e/test_ehr_integration.py): Bundle POST, Subscription notifications, GuidanceResponse."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from rnpc_gateway.fhir.fetch import FhirReader
from rnpc_gateway.fhir.mapping import MappingError
from rnpc_gateway.fhir import recovery
from rnpc_gateway.fhir.recovery import backoff_s, retry_pending
from rnpc_gateway.fhir.subscriptions import ranges, subtract
from rnpc_gateway.tables import AuditEntry, PendingFhirEvents, RecordVersion, SubscriptionState
from rnpc_shared.db import utc_now
from rnpc_shared.auth import SCOPE_ADMIN, SCOPE_RECOMMENDATION_READ, SCOPE_RECORD_READ, SCOPE_RECORD_WRITE
from rnpc_shared.kafka.tables import OutboxEvent

from .conftest import MCODE_EXAMPLES, bundle_resources, load_example

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SUBSCRIPTION = "https://ehr.test/fhir/Subscription/rnpc-recurrence"
TOPIC = "https://ehr.test/SubscriptionTopic/condition-recurrence"


@pytest.fixture
def fhir_write(auth_headers) -> dict[str, str]:  # noqa: ANN001
    """A FHIR JSON body with the one scope POST /fhir/r4 and /fhir/r4/notifications require."""
    return {**FHIR_JSON, **auth_headers([SCOPE_RECORD_WRITE])}


@pytest.fixture
def guidance_read(auth_headers) -> dict[str, str]:  # noqa: ANN001
    """The one scope GuidanceResponse reads require."""
    return auth_headers([SCOPE_RECOMMENDATION_READ])


async def _rows(app: Any, model: Any) -> list[Any]:
    async with app.state.runtime.sessions() as session:
        return list((await session.exec(select(model))).all())


async def test_bundle_post_is_accepted_with_the_native_location(gateway, fhir_write, auth_headers) -> None:  # noqa: ANN001
    app, client = gateway
    response = await client.post("/fhir/r4", content=json.dumps(load_example("npc-early-local")), headers=fhir_write)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/recurrences/fhir-npc-early-local-rec"
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    case = (await client.get("/v1/recurrences/fhir-npc-early-local-rec", headers=auth_headers([SCOPE_RECORD_READ]))).json()
    assert case["record"]["recurrence"]["t_category"] == "T2"
    assert len(await _rows(app, OutboxEvent)) == 1  # sent down the same pipeline as POST /v1/recurrences
    again = await client.post("/fhir/r4", content=json.dumps(load_example("npc-early-local")), headers=fhir_write)
    assert again.status_code == 202 and len(await _rows(app, OutboxEvent)) == 1  # accepted once


async def test_fhir_routes_need_their_scope_and_are_audited(gateway, auth_headers, stored_recommendation) -> None:  # noqa: ANN001
    app, client = gateway
    view_id = await stored_recommendation("pt-scoped")
    bundle = json.dumps(load_example("npc-early-local"))
    calls = [
        ("POST", "/fhir/r4", bundle, SCOPE_RECORD_WRITE),
        ("POST", "/fhir/r4/notifications", json.dumps(notification("handshake", 0)), SCOPE_RECORD_WRITE),
        ("GET", "/fhir/r4/GuidanceResponse?subject=Patient/pt-scoped", None, SCOPE_RECOMMENDATION_READ),
        ("GET", f"/fhir/r4/GuidanceResponse/{view_id}", None, SCOPE_RECOMMENDATION_READ),
    ]
    for method, url, body, needed in calls:
        other = SCOPE_RECORD_READ  # a valid token, but not the route's scope
        assert (await client.request(method, url, content=body, headers=FHIR_JSON)).status_code == 401, url
        assert (await client.request(method, url, content=body, headers={**FHIR_JSON, **auth_headers([other])})).status_code == 403, url
        assert (await client.request(method, url, content=body, headers={**FHIR_JSON, **auth_headers([needed])})).status_code < 300, url
    # the refused calls stored nothing: only the accepted Bundle and the fixture's case
    assert sorted(r.recurrence_id for r in await _rows(app, RecordVersion)) == ["fhir-npc-early-local-rec", "rec-pt-scoped"]
    audited = {(r.action, r.recurrence_id, r.status) for r in await _rows(app, AuditEntry)}
    assert {("read", "rec-pt-scoped", 200)} <= audited  # both GuidanceResponse reads
    assert any(r == "fhir-npc-early-local-rec" for _, r, _ in audited)  # the accepted Bundle


async def test_unusable_bundle_is_a_problem_naming_resource_and_element(gateway, fhir_write) -> None:  # noqa: ANN001
    _, client = gateway
    bundle = load_example("npc-early-local")
    next(e for e in bundle["entry"] if e["resource"]["id"] == "el-cn")["resource"]["valueCodeableConcept"]["coding"][0]["code"] = "1"
    response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=fhir_write)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0] == {
        "resource": "Observation/el-cn", "element": "valueCodeableConcept", "rule": "ajcc_value_unmapped",
        "message": response.json()["errors"][0]["message"],
    }


async def test_body_that_is_not_json_is_a_400(gateway, fhir_write) -> None:  # noqa: ANN001
    _, client = gateway
    response = await client.post("/fhir/r4", content=b"<Bundle/>", headers=fhir_write)
    assert response.status_code == 400 and response.json()["title"] == "Body is not JSON"


@pytest.mark.parametrize("path", ["/fhir/r4", "/fhir/r4/notifications"])
async def test_json_nested_past_the_parser_limit_is_a_400(gateway, fhir_write, path: str) -> None:  # noqa: ANN001
    _, client = gateway
    response = await client.post(path, content=b"[" * 5000 + b"]" * 5000, headers=fhir_write)
    assert response.status_code == 400 and response.json()["title"] == "Body is not JSON", response.text


async def test_json_nested_deeper_than_fhir_needs_is_a_400_naming_the_rule(gateway, fhir_write) -> None:  # noqa: ANN001
    _, client = gateway
    bundle = load_example("npc-early-local")
    extension: dict[str, Any] = {"url": "http://x", "valueString": "x"}
    for _ in range(300):
        extension = {"url": "http://x", "extension": [extension]}
    bundle["entry"][0]["resource"]["extension"] = [extension]
    response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=fhir_write)
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": "(body)", "rule": "json_depth", "message": "nested deeper than 64"}]


@pytest.mark.parametrize("path", sorted(MCODE_EXAMPLES.glob("Bundle-*.json")), ids=lambda p: p.name)
async def test_mcode_example_bundles_over_http_are_refused_with_a_reason_never_500(gateway, fhir_write, path) -> None:  # noqa: ANN001
    _, client = gateway
    response = await client.post("/fhir/r4", content=path.read_bytes(), headers=fhir_write)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["resource"]


def status_parameters(kind: str, since: int, events: list[tuple[int, str]], subscription: str = SUBSCRIPTION) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": subscription}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ]
    for number, focus in events:
        params.append({"name": "notification-event", "part": [
            {"name": "event-number", "valueString": str(number)},
            {"name": "timestamp", "valueInstant": "2026-11-20T10:00:00Z"},
            {"name": "focus", "valueReference": {"reference": focus}},
        ]})
    return {"resourceType": "Parameters", "parameter": params}


def notification(
    kind: str, since: int, events: list[tuple[int, str]] = (), resources: list[dict[str, Any]] = (), id_only: list[str] = (),  # type: ignore[assignment]
    subscription: str = SUBSCRIPTION,
) -> dict[str, Any]:
    entries = [{"fullUrl": "urn:uuid:2d5afc69-6ef2-420f-a8d1-8500c99eb96c", "resource": status_parameters(kind, since, list(events), subscription)}]
    entries += [{"fullUrl": f"https://ehr.test/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    entries += [{"fullUrl": url} for url in id_only]
    return {"resourceType": "Bundle", "type": "history", "timestamp": "2026-11-20T10:00:00Z", "entry": entries}


def _status_bundle(status: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}


def _parameters(*extra: dict[str, Any], kind: Any = "heartbeat", subscription: Any = None) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "subscription", "valueReference": subscription or {"reference": SUBSCRIPTION}}, {"name": "type", "valueCode": kind}, *extra]}


def _event(number: Any) -> dict[str, Any]:
    return {"name": "notification-event", "part": [{"name": "event-number", "valueString": number}]}


MALFORMED_NOTIFICATIONS = {
    "entry an object": ({"resourceType": "Bundle", "type": "history", "entry": {"a": 1}}, "Bundle", "entry", "list_required"),
    "entry a number": ({"resourceType": "Bundle", "type": "history", "entry": 5}, "Bundle", "entry", "list_required"),
    "an entry not an object": ({"resourceType": "Bundle", "type": "history", "entry": [_status_bundle(_parameters())["entry"][0], "x"]},
                               "Bundle", "entry[1]", "object_required"),
    "status a string": (_status_bundle("x"), "Bundle.entry[0]", "resourceType", "status_first"),
    "parameter items not objects": (_status_bundle({"resourceType": "Parameters", "parameter": [1]}), "Bundle.entry[0]", "parameter[0]", "object_required"),
    "parameter not a list": (_status_bundle({"resourceType": "Parameters", "parameter": {}}), "Bundle.entry[0]", "parameter", "list_required"),
    "type a list": (_status_bundle(_parameters(kind=["event-notification"])), "Bundle.entry[0]", "parameter[type].valueCode", "string_required"),
    "valueReference a string": (_status_bundle(_parameters(subscription="Subscription/x")),
                                "Bundle.entry[0]", "parameter[subscription].valueReference", "object_required"),
    "topic an object": (_status_bundle(_parameters({"name": "topic", "valueCanonical": {"x": 1}})),
                        "Bundle.entry[0]", "parameter[topic].valueCanonical", "string_required"),
    "event parts not a list": (_status_bundle(_parameters({"name": "notification-event", "part": "x"}, kind="event-notification")),
                               "Bundle.entry[0]", "parameter[notification-event].part", "list_required"),
    "event number a float": (_status_bundle(_parameters(_event(1.5), kind="event-notification")),
                             "Bundle.entry[0]", "parameter[notification-event].part[event-number]", "integer_string"),
    "event number past the column": (_status_bundle(_parameters({"name": "events-since-subscription-start", "valueString": "99999999999999999999"})),
                                     "Bundle.entry[0]", "parameter[events-since-subscription-start]", "event_number_range"),
    "event number negative": (_status_bundle(_parameters(_event("-1"), kind="event-notification")),
                              "Bundle.entry[0]", "parameter[notification-event].part[event-number]", "event_number_range"),
    "R4B events not objects": (_status_bundle({"resourceType": "SubscriptionStatus", "subscription": {"reference": SUBSCRIPTION},
                                               "type": "event-notification", "notificationEvent": ["x"]}),
                               "Bundle.entry[0]", "notificationEvent[0]", "object_required"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_NOTIFICATIONS))
async def test_malformed_notification_is_a_422_naming_the_element(gateway, fhir_write, name: str) -> None:  # noqa: ANN001
    app, client = gateway
    body, resource, element, rule = MALFORMED_NOTIFICATIONS[name]
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert (error["resource"], error["element"], error["rule"]) == (resource, element, rule)
    assert await _rows(app, SubscriptionState) == []  # refused before anything was stored


async def test_event_numbers_up_to_the_stored_column_range_are_accepted(gateway, fhir_write) -> None:  # noqa: ANN001
    app, client = gateway
    response = await client.post("/fhir/r4/notifications", content=json.dumps(notification("handshake", 2**31 - 1)), headers=fhir_write)
    assert response.status_code == 200, response.text
    [state] = await _rows(app, SubscriptionState)
    assert state.last_event_number == 2**31 - 1


async def test_too_many_events_in_one_notification_is_a_422(gateway, fhir_write) -> None:  # noqa: ANN001
    _, client = gateway
    body = _status_bundle(_parameters(*(_event(str(n)) for n in range(1, 1202)), kind="event-notification"))
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["rule"] == "too_many_events"


async def test_a_thousand_scattered_event_numbers_are_looked_up_among_the_kept_ones(gateway, fhir_write) -> None:  # noqa: ANN001
    """Every other number of a kept range: a thousand separate ranges to look up (SQLite refuses
    one WHERE clause that deep)."""
    app, client = gateway
    heartbeat = await client.post("/fhir/r4/notifications", content=json.dumps(notification("heartbeat", 2000)), headers=fhir_write)
    assert heartbeat.status_code == 200, heartbeat.text  # events 1-2000 missed: too many to read back now, kept
    body = _status_bundle(_parameters(*(_event(str(n)) for n in range(2, 2001, 2)), kind="event-notification"))
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 200, response.text
    assert [(r.first_event, r.last_event) for r in await _rows(app, PendingFhirEvents)] == [(1, 2000)]


def id_only_event_one(focus: str) -> str:
    """The JSON body of event 1 of the subscription, id-only: its focus is read from the FHIR server."""
    return json.dumps(notification("event-notification", 1, [(1, focus)], id_only=[focus]))


async def test_handshake_and_heartbeat_are_acknowledged_not_ingested(gateway, fhir_write) -> None:  # noqa: ANN001
    app, client = gateway
    for kind in ("handshake", "heartbeat"):
        response = await client.post("/fhir/r4/notifications", content=json.dumps(notification(kind, 0)), headers=fhir_write)
        assert response.status_code == 200, response.text
    assert await _rows(app, RecordVersion) == []
    [state] = await _rows(app, SubscriptionState)
    assert (state.subscription, state.last_event_number, state.gaps_detected) == (SUBSCRIPTION, 0, 0)


async def test_full_resource_event_is_ingested_once_and_a_gap_is_reported(gateway, fhir_write) -> None:  # noqa: ANN001
    app, client = gateway
    resources = [e["resource"] for e in load_example("npc-early-local")["entry"]]
    focus = "https://ehr.test/fhir/Condition/npc-early-local-rec"
    gaps_before = _metric((await client.get("/metrics")).text, GAPS)  # the counter is process-wide
    await client.post("/fhir/r4/notifications", content=json.dumps(notification("handshake", 0)), headers=fhir_write)
    first = await client.post("/fhir/r4/notifications", content=json.dumps(notification("event-notification", 1, [(1, focus)], resources)), headers=fhir_write)
    assert first.status_code == 202, first.text
    assert first.headers["location"] == "/v1/recurrences/fhir-npc-early-local-rec"
    redelivered = await client.post("/fhir/r4/notifications", content=json.dumps(notification("event-notification", 1, [(1, focus)], resources)), headers=fhir_write)
    assert redelivered.status_code == 200  # event 1 already seen: not ingested again
    assert len(await _rows(app, RecordVersion)) == 1 and len(await _rows(app, OutboxEvent)) == 1
    # events 2-3 never arrived: event 4 reveals the gap
    gap = await client.post("/fhir/r4/notifications", content=json.dumps(notification("event-notification", 4, [(4, focus)], resources)), headers=fhir_write)
    assert any("missed events 2-3" in i["diagnostics"] for i in gap.json()["issue"])
    [state] = await _rows(app, SubscriptionState)
    assert (state.last_event_number, state.gaps_detected) == (4, 1)
    assert state.last_gap and "events 2-3 missed" in state.last_gap
    assert _metric((await client.get("/metrics")).text, GAPS) == gaps_before + 1


def _metric(text: str, sample: str) -> float:
    """A sample's value in a /metrics page (0 if absent)."""
    line = next((line for line in text.splitlines() if line.startswith(sample + " ")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


GAPS = "rnpc_fhir_subscription_event_gaps_total"
RECOVERED = 'rnpc_fhir_subscription_gap_recoveries_total{outcome="recovered"}'
INCOMPLETE = 'rnpc_fhir_subscription_gap_recoveries_total{outcome="incomplete"}'


async def test_missed_events_are_read_back_with_events_and_ingested_first(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    subscription = f"{fhir_stub.base}/Subscription/rnpc-recurrence"
    fhir_stub.events = {1: f"{fhir_stub.base}/Condition/npc-ecog-rec", 2: f"{fhir_stub.base}/Condition/npc-restaged-rec"}
    before = _metric((await client.get("/metrics")).text, RECOVERED)
    await client.post("/fhir/r4/notifications", content=json.dumps(notification("handshake", 0, subscription=subscription)), headers=fhir_write)
    # events 1 and 2 never arrived: event 3 (full resources) reveals the gap
    focus = "https://ehr.test/fhir/Condition/npc-early-local-rec"
    body = notification("event-notification", 3, [(3, focus)], bundle_resources("npc-early-local"), subscription=subscription)
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/recurrences/fhir-npc-early-local-rec"  # the notification's own event
    issues = response.json()["issue"]
    assert "missed event(s) [1, 2] read back and accepted" in issues[0]["diagnostics"]
    assert {"severity": "information", "code": "incomplete", "diagnostics": "missed events 1-2: read back with $events"} in issues
    assert ("/fhir/Subscription/rnpc-recurrence/$events?eventsSinceNumber=1&eventsUntilNumber=2&content=full-resource", None) in fhir_stub.requests
    rows = await _rows(app, RecordVersion)
    # the missed events first, in their order, then the notification's own
    assert [r.recurrence_id for r in sorted(rows, key=lambda r: r.received_at)] == [
        "fhir-npc-ecog-rec", "fhir-npc-restaged-rec", "fhir-npc-early-local-rec"]
    [state] = await _rows(app, SubscriptionState)
    assert state.last_event_number == 3 and state.last_gap and "events 1-2 missed" in state.last_gap and "read back with $events" in state.last_gap
    assert _metric((await client.get("/metrics")).text, RECOVERED) == before + 1


def _condition(resource_id: str) -> dict[str, Any]:
    """The npc-early-local example's recurrence Condition under another id (a new case)."""
    condition = next(r for r in bundle_resources("npc-early-local") if r["resourceType"] == "Condition" and r["id"] == "npc-early-local-rec")
    return {**condition, "id": resource_id}


async def _kept(app: Any) -> list[tuple[int, int, str | None, int]]:
    return sorted((r.first_event, r.last_event, r.focus, r.attempts) for r in await _rows(app, PendingFhirEvents))


async def test_missed_events_not_had_are_kept_retried_and_ingested_when_the_server_has_them(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    runtime = app.state.runtime
    subscription = f"{fhir_stub.base}/Subscription/rnpc-recurrence"
    # of the missed 1-3: 1 is readable, 2 names a Condition the server does not have (yet), 3 is not returned (yet)
    gone = f"{fhir_stub.base}/Condition/late-rec"
    fhir_stub.events = {1: f"{fhir_stub.base}/Condition/npc-ecog-rec", 2: gone}
    before = _metric((await client.get("/metrics")).text, INCOMPLETE)
    heartbeat = notification("heartbeat", 3, subscription=subscription)
    response = await client.post("/fhir/r4/notifications", content=json.dumps(heartbeat), headers=fhir_write)
    assert response.status_code == 202, response.text
    issues = response.json()["issue"]
    assert issues[0]["diagnostics"] == "heartbeat acknowledged; missed event(s) [1] read back and accepted"
    assert {"severity": "warning", "code": "incomplete",
            "diagnostics": "missed events 1-3: read back with $events, except [3] (kept, retried automatically)"} in issues
    assert any(i["severity"] == "warning" and i["diagnostics"].startswith("missed event 2: its resources could not be read") for i in issues)
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"]
    assert await _kept(app) == [(2, 2, gone, 0), (3, 3, None, 0)]
    [state] = await _rows(app, SubscriptionState)
    assert state.last_event_number == 3 and "except [3]" in (state.last_gap or "")
    assert _metric((await client.get("/metrics")).text, INCOMPLETE) == before + 1

    # a retry while the server still lacks them keeps them, to try again after a growing delay
    now = utc_now()
    assert await retry_pending(runtime, now) == 0
    assert await _kept(app) == [(2, 2, gone, 1), (3, 3, None, 1)]
    assert all(r.next_attempt_at > now for r in await _rows(app, PendingFhirEvents))
    assert await retry_pending(runtime, now) == 0 and [a for *_, a in await _kept(app)] == [1, 1]  # not due: not tried
    metrics = (await client.get("/metrics")).text
    assert _metric(metrics, "rnpc_fhir_events_pending") == 2 and _metric(metrics, "rnpc_fhir_events_pending_oldest_age_seconds") >= 0

    # the server has them now: the next due retry ingests both, and nothing is kept
    fhir_stub.resources.append(_condition("late-rec"))
    fhir_stub.events[3] = f"{fhir_stub.base}/Condition/npc-restaged-rec"
    ingested_before = _metric(metrics, "rnpc_fhir_pending_events_ingested_total")
    assert await retry_pending(runtime, now + timedelta(hours=2)) == 2
    assert await _kept(app) == []
    assert sorted(r.recurrence_id for r in await _rows(app, RecordVersion)) == ["fhir-late-rec", "fhir-npc-ecog-rec", "fhir-npc-restaged-rec"]
    metrics = (await client.get("/metrics")).text
    assert _metric(metrics, "rnpc_fhir_pending_events_ingested_total") == ingested_before + 2
    assert _metric(metrics, "rnpc_fhir_events_pending") == 0
    retried = [e for e in await _rows(app, AuditEntry) if e.route == "JOB fhir-pending-retry"]
    assert sorted(e.recurrence_id for e in retried) == ["fhir-late-rec", "fhir-npc-restaged-rec"]  # the retry's ingest is audited


async def test_an_event_whose_resources_cannot_be_read_is_kept_and_ingested_when_sent_again(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = id_only_event_one(focus)
    fhir_stub.down = True
    refused = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert refused.status_code == 502, refused.text
    assert "event(s) [1] could not be read from the FHIR server now" in refused.json()["detail"]
    assert await _rows(app, RecordVersion) == [] and await _kept(app) == [(1, 1, focus, 0)]
    # the EHR sends it again (a 502 invites that): event 1 was seen, but it is kept, so it is tried now
    again = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert again.status_code == 502 and await _kept(app) == [(1, 1, focus, 0)]  # still down: kept once, not twice
    fhir_stub.down = False
    accepted = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["location"] == "/v1/recurrences/fhir-npc-ecog-rec"
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"] and await _kept(app) == []
    # and once ingested it is not ingested again
    once_more = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert once_more.status_code == 200 and len(await _rows(app, OutboxEvent)) == 1


async def test_an_event_whose_ingest_fails_on_a_database_error_is_kept_and_ingested_when_sent_again(gateway, fhir_write, fhir_stub, monkeypatch) -> None:  # noqa: ANN001
    """Whatever fails after the event number is counted as seen (here the database, injected into
    the one ingest step), the event was kept ahead with it: the EHR's retry ingests it."""
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = id_only_event_one(focus)
    real_accept, failures = recovery.accept, [sqlite3.OperationalError("database is locked")]

    async def accept_failing_once(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        if failures:
            raise OperationalError("INSERT INTO record_versions ...", {}, failures.pop())
        return await real_accept(*args, **kwargs)

    monkeypatch.setattr(recovery, "accept", accept_failing_once)
    busy = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert busy.status_code == 503, busy.text  # the database's answer: retry shortly
    assert await _rows(app, RecordVersion) == [] and [k[:3] for k in await _kept(app)] == [(1, 1, focus)]
    again = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert again.status_code == 202, again.text
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"] and await _kept(app) == []


async def test_an_event_answered_with_a_maintenance_page_is_kept_not_a_500(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = id_only_event_one(focus)
    fhir_stub.maintenance = True
    refused = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert refused.status_code == 502, refused.text
    assert "not JSON (text/html)" in (await _rows(app, PendingFhirEvents))[0].reason
    fhir_stub.maintenance = False
    assert (await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)).status_code == 202
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"] and await _kept(app) == []


async def test_an_event_refused_for_its_content_does_not_cost_the_next_event_its_ingest(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    foreign, good = "https://elsewhere.test/fhir/Condition/x", f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = json.dumps(notification("event-notification", 2, [(1, foreign), (2, good)], id_only=[foreign, good]))
    refused = await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)
    assert refused.status_code == 422 and refused.json()["errors"][0]["rule"] == "foreign_server"  # event 1: its content
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"]  # event 2 ingested all the same
    assert await _kept(app) == []  # nothing to retry: event 1 would be refused again


async def test_a_kept_event_not_had_by_a_retry_is_ingested_by_the_background_retry(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-restaged-rec"
    fhir_stub.down = True
    body = id_only_event_one(focus)
    assert (await client.post("/fhir/r4/notifications", content=body, headers=fhir_write)).status_code == 502
    fhir_stub.down = False
    assert await retry_pending(app.state.runtime) == 1
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-restaged-rec"] and await _kept(app) == []


def test_kept_ranges_are_split_and_merged_by_event_number() -> None:
    assert ranges([7, 1, 3, 2, 3]) == [(1, 3), (7, 7)] and ranges([]) == []
    assert subtract(1, 10, {1, 5, 6, 10, 11}) == [(2, 4), (7, 9)]
    assert subtract(1, 3, set()) == [(1, 3)] and subtract(2, 2, {2}) == []
    assert subtract(1, 10**9, {2}) == [(1, 1), (3, 10**9)]  # arithmetic: a wide range costs nothing


def test_retry_delay_doubles_and_is_capped() -> None:
    from rnpc_gateway.settings import GatewaySettings

    settings = GatewaySettings(fhir_pending_backoff_s=30, fhir_pending_backoff_max_s=3600, profile="dev")
    assert [backoff_s(n, settings) for n in (1, 2, 3, 8, 50)] == [30, 60, 120, 3600, 3600]


async def test_a_gap_too_large_to_read_back_while_the_ehr_waits_is_kept_and_read_back_in_parts(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    subscription = f"{fhir_stub.base}/Subscription/rnpc-recurrence"
    heartbeat = notification("heartbeat", 21, subscription=subscription)  # the default limit is 20
    response = await client.post("/fhir/r4/notifications", content=json.dumps(heartbeat), headers=fhir_write)
    assert response.status_code == 200, response.text
    assert any(i["severity"] == "warning" and i["diagnostics"].startswith("missed events 1-21: beyond the 20 read back while the EHR waits") for i in response.json()["issue"])
    assert not any("$events" in path for path, _ in fhir_stub.requests)
    assert await _kept(app) == [(1, 21, None, 0)]
    fhir_stub.events = {21: f"{fhir_stub.base}/Condition/npc-ecog-rec"}
    assert await retry_pending(app.state.runtime) == 1  # in the background, in parts of at most 20
    reads = [path for path, _ in fhir_stub.requests if "$events" in path]
    assert [p.split("?", 1)[1].split("&content")[0] for p in reads] == [
        "eventsSinceNumber=1&eventsUntilNumber=20", "eventsSinceNumber=21&eventsUntilNumber=21"]
    assert await _kept(app) == [(1, 20, None, 1)]  # not returned: still kept


async def test_many_small_gaps_are_read_back_while_the_ehr_waits_only_up_to_the_limit(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    """The limit bounds the events read back per notification, all gaps together (one $events call
    per gap): 30 gaps of one event are 20 calls while the EHR waits, the rest kept for the background."""
    app, client = gateway
    subscription = f"{fhir_stub.base}/Subscription/rnpc-recurrence"
    focus = f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = notification("event-notification", 60, [(n, focus) for n in range(2, 61, 2)], id_only=[focus], subscription=subscription)
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 202, response.text
    assert len([path for path, _ in fhir_stub.requests if "$events" in path]) == 20  # the default limit
    assert [(first, last) for first, last, _, _ in await _kept(app)] == [(n, n) for n in range(1, 60, 2)]  # every gap kept


@pytest.mark.parametrize("reference", ["https://ehr.test/fhir/Subscription/x", "http://127.0.0.1/fhir/../admin/Subscription/x",
                                       "Subscription/..", "Patient/x", "Subscription/x/_history/1"])
async def test_events_are_read_back_only_from_a_subscription_on_the_configured_server(reference: str) -> None:
    with pytest.raises(MappingError):
        await FhirReader("http://127.0.0.1/fhir").missed_events(reference, 1, 2)


async def test_heartbeat_reveals_missed_events(gateway, fhir_write) -> None:  # noqa: ANN001
    app, client = gateway
    await client.post("/fhir/r4/notifications", content=json.dumps(notification("handshake", 0)), headers=fhir_write)
    await client.post("/fhir/r4/notifications", content=json.dumps(notification("heartbeat", 2)), headers=fhir_write)
    [state] = await _rows(app, SubscriptionState)
    assert (state.last_event_number, state.gaps_detected) == (2, 1)
    assert await _rows(app, RecordVersion) == []


async def test_id_only_event_is_fetched_from_the_fhir_server(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-ecog-rec"
    body = notification("event-notification", 1, [(1, focus)], id_only=[focus])
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/recurrences/fhir-npc-ecog-rec"
    paths = [p for p, _ in fhir_stub.requests]
    assert "/fhir/Condition/npc-ecog-rec" in paths and "/fhir/Patient/npc-ecog" in paths
    [row] = await _rows(app, RecordVersion)
    assert row.record["patient"]["ecog"] == 1


async def test_id_only_event_reads_the_restaging_imaging_and_reports(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    focus = f"{fhir_stub.base}/Condition/npc-restaged-rec"
    body = notification("event-notification", 1, [(1, focus)], id_only=[focus])
    response = await client.post("/fhir/r4/notifications", content=json.dumps(body), headers=fhir_write)
    assert response.status_code == 202, response.text
    paths = [p for p, _ in fhir_stub.requests]
    assert any(p.startswith("/fhir/ImagingStudy?patient=npc-restaged") for p in paths)
    assert any(p.startswith("/fhir/DiagnosticReport?patient=npc-restaged") for p in paths)
    [row] = await _rows(app, RecordVersion)
    assert row.record["restaging"] == {"mri_on": "2026-10-12", "pet_ct_on": "2026-10-15", "endoscopy_on": "2026-10-08",
                                       "nbi_used": None, "biopsy_confirmed": True}


async def test_id_only_focus_on_another_server_is_refused(gateway, fhir_write) -> None:  # noqa: ANN001
    _, client = gateway
    focus = "https://elsewhere.test/fhir/Condition/x"
    response = await client.post("/fhir/r4/notifications", content=id_only_event_one(focus), headers=fhir_write)
    assert response.status_code == 422 and response.json()["errors"][0]["rule"] == "foreign_server"


async def test_guidance_response_search_and_read(gateway, guidance_read, stored_recommendation) -> None:  # noqa: ANN001
    from fhir.resources.R4B import get_fhir_model_class

    _, client = gateway
    view_id = await stored_recommendation("pt-guidance")
    bundle = (await client.get("/fhir/r4/GuidanceResponse", params={"subject": "Patient/pt-guidance"}, headers=guidance_read)).json()
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 1
    get_fhir_model_class("Bundle").model_validate(bundle)
    guidance = bundle["entry"][0]["resource"]
    assert guidance["id"] == view_id and guidance["subject"] == {"reference": "Patient/pt-guidance"}
    # scoring is not reachable in this test: the EQD2 figures are absent and the Bundle says why
    assert bundle["entry"][1]["search"]["mode"] == "outcome"
    read = await client.get(f"/fhir/r4/GuidanceResponse/{view_id}", headers=guidance_read)
    assert read.status_code == 200 and read.json() == guidance
    assert (await client.get("/fhir/r4/GuidanceResponse/unknown", headers=guidance_read)).status_code == 404
    empty = (await client.get("/fhir/r4/GuidanceResponse", params={"subject": "Patient/nobody"}, headers=guidance_read)).json()
    assert empty["total"] == 0


async def test_guidance_search_needs_a_subject(gateway, guidance_read) -> None:  # noqa: ANN001
    _, client = gateway
    response = await client.get("/fhir/r4/GuidanceResponse", headers=guidance_read)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "subject"


async def test_kept_events_are_listed_and_dismissed_by_an_admin_only_and_audited(gateway, fhir_write, fhir_stub, auth_headers) -> None:  # noqa: ANN001
    app, client = gateway
    heartbeat = notification("heartbeat", 30, subscription=f"{fhir_stub.base}/Subscription/rnpc-recurrence")
    await client.post("/fhir/r4/notifications", content=json.dumps(heartbeat), headers=fhir_write)
    admin, reader = auth_headers([SCOPE_ADMIN]), auth_headers([SCOPE_RECORD_READ])
    assert (await client.get("/v1/admin/fhir/pending-events", headers=reader)).status_code == 403
    assert (await client.get("/v1/admin/fhir/pending-events")).status_code == 401
    [kept] = (await client.get("/v1/admin/fhir/pending-events", headers=admin)).json()["pending"]
    assert (kept["first_event"], kept["last_event"], kept["attempts"]) == (1, 30, 0) and "beyond the 20 read back" in kept["reason"]
    assert (await client.delete(f"/v1/admin/fhir/pending-events/{kept['id']}", headers=reader)).status_code == 403
    assert (await client.delete(f"/v1/admin/fhir/pending-events/{kept['id']}", headers=admin)).status_code == 204
    assert await _kept(app) == []
    missing = await client.delete(f"/v1/admin/fhir/pending-events/{kept['id']}", headers=admin)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    details = [e.detail for e in await _rows(app, AuditEntry) if e.route.startswith(("GET /v1/admin/fhir", "DELETE /v1/admin/fhir"))]
    assert "listed 1 kept FHIR event ranges" in details and any(d and d.startswith("dismissed kept FHIR events") and d.endswith("events 1-30") for d in details)
