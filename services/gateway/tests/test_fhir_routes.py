"""FHIR routes in-process over a real SQLite gateway DB (no broker: the pipeline part is in
tests/e2e/test_ehr_integration.py): Bundle POST, Subscription notifications, GuidanceResponse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import select

from rnpc_gateway.fhir.fetch import FhirReader
from rnpc_gateway.fhir.mapping import MappingError
from rnpc_gateway.tables import AuditEntry, RecordVersion, SubscriptionState
from rnpc_shared.auth import SCOPE_RECOMMENDATION_READ, SCOPE_RECORD_READ, SCOPE_RECORD_WRITE
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
    metrics = (await client.get("/metrics")).text
    assert "rnpc_fhir_subscription_event_gaps_total 1.0" in metrics


def _metric(text: str, sample: str) -> float:
    """A sample's value in a /metrics page (0 if absent)."""
    line = next((line for line in text.splitlines() if line.startswith(sample + " ")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


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


async def test_missed_events_not_returned_or_refused_are_reported_and_keep_out_nothing_else(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    app, client = gateway
    subscription = f"{fhir_stub.base}/Subscription/rnpc-recurrence"
    # of the missed 1-3: 1 is readable, 2 names a Condition the server does not have, 3 is not returned
    fhir_stub.events = {1: f"{fhir_stub.base}/Condition/npc-ecog-rec", 2: f"{fhir_stub.base}/Condition/gone"}
    before = _metric((await client.get("/metrics")).text, INCOMPLETE)
    heartbeat = notification("heartbeat", 3, subscription=subscription)
    response = await client.post("/fhir/r4/notifications", content=json.dumps(heartbeat), headers=fhir_write)
    assert response.status_code == 202, response.text
    issues = response.json()["issue"]
    assert issues[0]["diagnostics"] == "heartbeat acknowledged; missed event(s) [1] read back and accepted"
    assert {"severity": "warning", "code": "incomplete", "diagnostics": "missed events 1-3: read back with $events, except [3]"} in issues
    assert any(i["severity"] == "error" and i["diagnostics"].startswith("missed event 2 read back but refused") for i in issues)
    assert [r.recurrence_id for r in await _rows(app, RecordVersion)] == ["fhir-npc-ecog-rec"]
    [state] = await _rows(app, SubscriptionState)
    assert state.last_event_number == 3 and "except [3]" in (state.last_gap or "")
    assert _metric((await client.get("/metrics")).text, INCOMPLETE) == before + 1


async def test_a_gap_too_large_to_read_back_while_the_ehr_waits_is_reported_not_read(gateway, fhir_write, fhir_stub) -> None:  # noqa: ANN001
    _, client = gateway
    heartbeat = notification("heartbeat", 21, subscription=f"{fhir_stub.base}/Subscription/rnpc-recurrence")  # the default limit is 20
    response = await client.post("/fhir/r4/notifications", content=json.dumps(heartbeat), headers=fhir_write)
    assert response.status_code == 200, response.text
    assert any(i["severity"] == "warning" and i["diagnostics"].startswith("missed events 1-21: more than 20") for i in response.json()["issue"])
    assert not any("$events" in path for path, _ in fhir_stub.requests)


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
    response = await client.post("/fhir/r4/notifications", content=json.dumps(notification("event-notification", 1, [(1, focus)], id_only=[focus])), headers=fhir_write)
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
