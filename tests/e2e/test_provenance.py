"""Event provenance (issue 11): a recommendation published on the topic by anyone but the
pipeline never becomes the recommendation; it is dead-lettered (reason `provenance`), shown on
the case and counted. Real services, real broker, real databases."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest

from rnpc_shared.contracts.events import TOPIC_RECOMMENDATION_ISSUED, new_event
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_devstack.stack import wait_until
from rnpc_shared.kafka.producer import EventProducer
from rnpc_shared.settings import ServiceSettings

pytestmark = pytest.mark.integration


def _record(example: dict[str, Any], recurrence_id: str) -> dict[str, Any]:
    return copy.deepcopy(example) | {"recurrence_id": recurrence_id, "version": 1}


def _recommendation(stack, recurrence_id: str) -> dict[str, Any] | None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}/recommendation", headers=stack.auth_headers())
    return response.json() if response.status_code == 200 else None


def _forged(genuine: dict[str, Any], recurrence_id: str, content_hash: str, *, scores_hash: str, evidence_hash: str) -> dict[str, Any]:
    recommendation = copy.deepcopy(genuine) | {
        "recurrence_id": recurrence_id,
        "status": "not_local_candidate",
        "warnings": ["FORGED"],
        "input_hash": "f" * 64,
    }
    return {
        "recurrence_id": recurrence_id,
        "version": 1,
        "content_hash": content_hash,
        "recommendation": recommendation,
        "record_summary": {"recurrence_id": recurrence_id, "patient_ref": "p", "version": 1, "site": "local",
                           "t_category": "T1", "n_category": "N0", "m_category": "M0"},
        "scores_hash": scores_hash,
        "evidence_hash": evidence_hash,
    }


def _publish(stack, events: list[dict[str, Any]]) -> None:  # noqa: ANN001
    async def run() -> None:
        producer = EventProducer(ServiceSettings(**stack.broker.connection.settings_fields()))
        await producer.start()
        try:
            for data in events:
                event = new_event(source="urn:rnpc:recommendation", type_=TOPIC_RECOMMENDATION_ISSUED,
                                  subject=data["recurrence_id"], data=data, correlation_id=None)
                await producer.send(TOPIC_RECOMMENDATION_ISSUED, key=data["recurrence_id"],
                                    value=event.model_dump_json().encode(), headers=[])
        finally:
            await producer.stop()

    asyncio.run(run())


def _provenance_notices(stack, recurrence_id: str) -> list[dict[str, Any]]:  # noqa: ANN001
    case = httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}", headers=stack.auth_headers()).json()
    return [n for n in case["dead_letters"] if n["error_type"] == "provenance"]


def test_a_forged_recommendation_on_the_topic_never_becomes_the_recommendation(stack, example_record) -> None:  # noqa: ANN001
    record = _record(example_record, "forge-1")
    content_hash = RecurrenceRecord.model_validate(record).content_hash()
    assert httpx.post(f"{stack.base()}/v1/recurrences", json=record, headers=stack.auth_headers()).status_code == 202
    genuine = wait_until(lambda: _recommendation(stack, "forge-1"), 60, "the genuine recommendation")

    fake = "e" * 64
    _publish(stack, [
        _forged(genuine, "forge-1", "0" * 64, scores_hash=fake, evidence_hash=fake),  # other record content
        _forged(genuine, "forge-1", content_hash, scores_hash=fake, evidence_hash=fake),  # other basis
        _forged(genuine, "never-recorded-1", content_hash, scores_hash=fake, evidence_hash=fake),  # no such case
    ])
    notices = wait_until(lambda: len(n := _provenance_notices(stack, "forge-1")) >= 2 and n, 60, "two provenance notices")
    assert {n["stage"] for n in notices} == {"gateway"}
    assert all(n["original_topic"] == TOPIC_RECOMMENDATION_ISSUED for n in notices)
    reasons = " | ".join(n["reason"] for n in notices)
    assert "is for content" in reasons and "based on" in reasons
    assert _recommendation(stack, "forge-1") == genuine  # unchanged
    metrics = httpx.get(f"{stack.base()}/metrics").text
    assert f'rnpc_provenance_rejected_total{{service="gateway",topic="{TOPIC_RECOMMENDATION_ISSUED}"}}' in metrics


def test_a_forged_recommendation_published_before_the_genuine_one_is_refused(stack, example_record) -> None:  # noqa: ANN001
    # A well-formed recommendation to copy (the same version again is accepted once: idempotent).
    assert httpx.post(f"{stack.base()}/v1/recurrences", json=_record(example_record, "forge-1"), headers=stack.auth_headers()).status_code == 202
    template = wait_until(lambda: _recommendation(stack, "forge-1"), 60, "a recommendation to copy")
    record = _record(example_record, "forge-2")
    content_hash = RecurrenceRecord.model_validate(record).content_hash()
    assert httpx.post(f"{stack.base()}/v1/recurrences", json=record, headers=stack.auth_headers()).status_code == 202
    # Right case, right content hash, invented basis: published while the pipeline is still running.
    _publish(stack, [_forged(template, "forge-2", content_hash, scores_hash="d" * 64, evidence_hash="d" * 64)])

    served = wait_until(lambda: _recommendation(stack, "forge-2"), 60, "the genuine recommendation")
    wait_until(lambda: _provenance_notices(stack, "forge-2"), 60, "the forged one to be refused")
    assert "FORGED" not in served["warnings"] and served["input_hash"] != "f" * 64
    assert _recommendation(stack, "forge-2") == served
