"""EHR integration end to end, services as real processes over the real embedded broker:
a Subscription handshake + heartbeat + event ends as exactly one recommendation; a FHIR Bundle on
rnpc.ehr.inbound.v1 ends as a recommendation (and an unusable one is dead-lettered with the
reason); a posted Bundle's advice reads back as FHIR with the EQD2 computed by scoring."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rnpc_shared.contracts.events import CLOUDEVENTS_CONTENT_TYPE, TOPIC_EHR_INBOUND, dlq_topic
from rnpc_devstack.stack import wait_until
from rnpc_shared.kafka.connection import KafkaConnection
from rnpc_shared.kafka.consumer import decode_dlq_headers

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fhir"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _fhir(stack) -> dict[str, str]:  # noqa: ANN001
    """A FHIR JSON body with a bearer token (every user scope) of the stack's dev issuer."""
    return {**FHIR_JSON, **stack.auth_headers()}


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def _recommendation(stack, recurrence_id: str) -> dict[str, Any] | None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}/recommendation", headers=stack.auth_headers())
    return response.json() if response.status_code == 200 else None


def _notification(kind: str, since: int, events: list[tuple[int, str]], resources: list[dict[str, Any]]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": "https://ehr.test/fhir/Subscription/e2e"}},
        {"name": "topic", "valueCanonical": "https://ehr.test/SubscriptionTopic/condition-recurrence"},
        {"name": "status", "valueCode": "active"}, {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ] + [{"name": "notification-event", "part": [{"name": "event-number", "valueString": str(n)},
                                                 {"name": "focus", "valueReference": {"reference": focus}}]} for n, focus in events]
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {"resourceType": "Parameters", "parameter": params}}]
    entries += [{"fullUrl": f"https://ehr.test/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "history", "entry": entries}


def test_subscription_handshake_heartbeat_event_end_as_exactly_one_recommendation(stack) -> None:  # noqa: ANN001
    url = f"{stack.base()}/fhir/r4/notifications"
    resources = [e["resource"] for e in _example("npc-neck-only")["entry"]]
    focus = "https://ehr.test/fhir/Condition/npc-neck-only-rec"
    assert httpx.post(url, content=json.dumps(_notification("handshake", 0, [], [])), headers=_fhir(stack)).status_code == 200
    assert httpx.post(url, content=json.dumps(_notification("heartbeat", 0, [], [])), headers=_fhir(stack)).status_code == 200
    event = httpx.post(url, content=json.dumps(_notification("event-notification", 1, [(1, focus)], resources)), headers=_fhir(stack))
    assert event.status_code == 202, event.text
    body = wait_until(lambda: _recommendation(stack, "fhir-npc-neck-only-rec"), 60, "the recommendation")
    assert (body["recurrence_id"], body["version"]) == ("fhir-npc-neck-only-rec", 1)
    case = httpx.get(f"{stack.base()}/v1/recurrences/fhir-npc-neck-only-rec", headers=stack.auth_headers()).json()
    assert [v["version"] for v in case["versions"]] == [1]
    assert case["record"]["recurrence"]["site"] == "regional"
    # event 2 was lost; event 3 (same content) reports the gap and adds no second record
    gap = httpx.post(url, content=json.dumps(_notification("event-notification", 3, [(3, focus)], resources)), headers=_fhir(stack))
    assert any("missed events 2-2" in issue["diagnostics"] for issue in gap.json()["issue"])
    assert [v["version"] for v in httpx.get(f"{stack.base()}/v1/recurrences/fhir-npc-neck-only-rec", headers=stack.auth_headers()).json()["versions"]] == [1]


async def _publish(connection: KafkaConnection, data: dict[str, Any], subject: str) -> None:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "urn:hospital:integration-engine", "type": "org.hl7.fhir.r4.bundle",
             "subject": subject, "time": datetime.now(UTC).isoformat(), "correlationid": str(uuid.uuid4()),
             "datacontenttype": "application/fhir+json", "data": data}
    producer = AIOKafkaProducer(**connection.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC_EHR_INBOUND, key=subject.encode(), value=json.dumps(event).encode(),
                                     headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())])
    finally:
        await producer.stop()


async def _dead_letter_reasons(connection: KafkaConnection, subject: str, deadline_s: float = 60) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(dlq_topic(TOPIC_EHR_INBOUND), **connection.client_options(), group_id=f"e2e-dlq-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while not found and loop.time() < end:  # poll with a deadline
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [decode_dlq_headers(r.headers) for r in records if r.key == subject.encode()]
    finally:
        await consumer.stop()
    return found


def test_bundle_on_the_inbound_topic_ends_as_a_recommendation_and_a_bad_one_is_dead_lettered(stack) -> None:  # noqa: ANN001
    asyncio.run(_publish(stack.broker.connection, _example("npc-ecog"), "npc-ecog"))
    body = wait_until(lambda: _recommendation(stack, "fhir-npc-ecog-rec"), 60, "the recommendation")
    assert body["recurrence_id"] == "fhir-npc-ecog-rec"
    assert httpx.get(f"{stack.base()}/v1/recurrences/fhir-npc-ecog-rec", headers=stack.auth_headers()).json()["record"]["patient"]["ecog"] == 1

    bad = _example("npc-metastatic")
    next(e for e in bad["entry"] if e["resource"]["id"] == "mt-cn")["resource"]["valueCodeableConcept"]["coding"][0]["code"] = "42"
    asyncio.run(_publish(stack.broker.connection, bad, "npc-metastatic-bad"))
    [reason] = asyncio.run(_dead_letter_reasons(stack.broker.connection, "npc-metastatic-bad"))
    assert reason["dlq.error_type"] == "PermanentError"
    assert "Observation/mt-cn" in reason["dlq.reason"] and "valueCodeableConcept" in reason["dlq.reason"]


def test_posted_bundle_reads_back_as_guidance_response_with_eqd2(stack) -> None:  # noqa: ANN001
    response = httpx.post(f"{stack.base()}/fhir/r4", content=json.dumps(_example("npc-two-volumes-relapse")), headers=_fhir(stack))
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/recurrences/fhir-npc-two-volumes-rec"
    recommendation = wait_until(lambda: _recommendation(stack, "fhir-npc-two-volumes-rec"), 60, "the recommendation")
    bundle = httpx.get(f"{stack.base()}/fhir/r4/GuidanceResponse", params={"subject": "Patient/npc-two-volumes-relapse"}, headers=stack.auth_headers()).json()
    by_type = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    [guidance] = by_type["GuidanceResponse"]
    assert guidance["identifier"][0]["value"] == f"fhir-npc-two-volumes-rec/v{recommendation['version']}"
    record = httpx.get(f"{stack.base()}/v1/recurrences/fhir-npc-two-volumes-rec", headers=stack.auth_headers()).json()["record"]
    scores = httpx.post(f"{stack.base()}/v1/scores", json=record, headers=stack.auth_headers()).json()
    [prior] = [o for o in by_type["Observation"] if o["id"].endswith("eqd2-prior")]
    assert prior["valueQuantity"]["value"] == scores["results"]["eqd2_prior_course"]["value"]


def test_restaging_mri_before_the_prior_rt_end_reaches_the_workup_rule(stack) -> None:  # noqa: ANN001
    """The mapper passes a pre-RT MRI through as is; the recommendation's workup rule names it."""
    bundle = _example("npc-restaged")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] != "rs-mri"]  # only the 2020 staging MRI is left
    text = json.dumps(bundle).replace("npc-restaged-rec", "npc-restaged-pre-rt-rec")
    response = httpx.post(f"{stack.base()}/fhir/r4", content=text, headers=_fhir(stack))
    assert response.status_code == 202, response.text
    recommendation = wait_until(lambda: _recommendation(stack, "fhir-npc-restaged-pre-rt-rec"), 60, "the recommendation")
    record = httpx.get(f"{stack.base()}/v1/recurrences/fhir-npc-restaged-pre-rt-rec", headers=stack.auth_headers()).json()["record"]
    assert record["restaging"] == {"mri_on": "2020-12-20", "pet_ct_on": "2026-10-15", "endoscopy_on": "2026-10-08",
                                   "nbi_used": None, "biopsy_confirmed": True}
    assert recommendation["status"] == "workup_incomplete"
    workup = recommendation["required_workup"]
    assert any(w.startswith("MRI of the nasopharynx and skull base: the one recorded (2020-12-20) is not after the end of the prior RT")
               for w in workup), workup
    # the PET/CT and the histology were mapped and are current: the rule does not ask for them
    assert not any("PET/CT" in w or "histological" in w for w in workup), workup
