"""End to end over the real embedded broker and real databases, services as real processes."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from rnpc_shared.contracts.recommendation import Recommendation
from rnpc_devstack.stack import wait_until

pytestmark = pytest.mark.integration


def _recommendation(stack, recurrence_id: str) -> dict[str, Any] | None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/recurrences/{recurrence_id}/recommendation", headers=stack.auth_headers())
    return response.json() if response.status_code == 200 else None


def _with_id(record: dict[str, Any], recurrence_id: str, version: int = 1) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["recurrence_id"] = recurrence_id
    record["version"] = version
    return record


def test_example_record_flows_through_the_whole_chain(stack, example_record) -> None:  # noqa: ANN001
    record = _with_id(example_record, "e2e-chain-1")
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/recurrences/e2e-chain-1"
    assert response.json()["outcome"] == "new"

    body = wait_until(lambda: _recommendation(stack, "e2e-chain-1"), 60, "the recommendation")
    recommendation = Recommendation.model_validate(body)  # the contract's shape
    assert (recommendation.recurrence_id, recommendation.version) == ("e2e-chain-1", 1)
    assert {o.modality for o in recommendation.options} >= {"enp", "reimrt", "neck_dissection"}
    assert [o.rank for o in recommendation.options] == sorted(o.rank for o in recommendation.options)

    # The synchronous path runs the same pure functions: same clinical content.
    evaluated = httpx.post(f"{stack.base()}/v1/evaluate", headers=stack.auth_headers(), json=record).json()["recommendation"]
    strip = lambda r: {k: v for k, v in r.items() if k != "issued_at"}  # noqa: E731
    assert strip(evaluated) == strip(body)

    case = httpx.get(f"{stack.base()}/v1/recurrences/e2e-chain-1", headers=stack.auth_headers()).json()
    assert case["latest_version"] == 1
    assert case["versions"][0]["stages"] == {
        "recorded": "done", "scoring": "done", "evidence": "done", "recommendation": "done",
    }


def test_same_version_twice_is_accepted_once(stack, example_record) -> None:  # noqa: ANN001
    record = _with_id(example_record, "e2e-dup-1")
    first = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    second = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.json()["outcome"], second.json()["outcome"]) == ("new", "duplicate")
    case = httpx.get(f"{stack.base()}/v1/recurrences/e2e-dup-1", headers=stack.auth_headers()).json()
    assert [v["version"] for v in case["versions"]] == [1]


def test_changed_content_under_the_same_version_is_a_conflict(stack, example_record) -> None:  # noqa: ANN001
    record = _with_id(example_record, "e2e-conflict-1")
    assert httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record).status_code == 202
    record["patient"]["age_years"] = 53
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_newer_version_supersedes(stack, example_record) -> None:  # noqa: ANN001
    v1 = _with_id(example_record, "e2e-versions-1", 1)
    v2 = _with_id(example_record, "e2e-versions-1", 2)
    v2["recurrence"]["t_category"] = "T3"
    v2["recurrence"]["extension"]["skull_base_bone"] = True
    assert httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=v1).json()["outcome"] == "new"
    assert httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=v2).json()["outcome"] == "superseding"
    body = wait_until(
        lambda: (r := _recommendation(stack, "e2e-versions-1")) and r["version"] == 2 and r, 60, "version 2's recommendation"
    )
    assert body["version"] == 2
    case = httpx.get(f"{stack.base()}/v1/recurrences/e2e-versions-1", headers=stack.auth_headers()).json()
    assert [(v["version"], v["superseded"]) for v in case["versions"]] == [(1, True), (2, False)]
    stale = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=_with_id(example_record, "e2e-versions-1", 1) | {"patient_ref": "x"})
    assert stale.status_code == 409


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["patient"].update(kps=95), "patient.kps"),
        (lambda r: r["recurrence"].update(t_category="T5"), "recurrence.t_category"),
        (lambda r: r["recurrence"].update(gtv_volume_cm3=-3), "recurrence.gtv_volume_cm3"),
        (lambda r: r["prior_treatment"].update(rt_end_on="2026-12-01"), "prior_treatment.rt_end_on"),
        (lambda r: r["planned_reirradiation"].update(total_dose_gy=80, fractions=2), "planned_reirradiation.total_dose_gy"),
        (lambda r: r.update(unexpected_field=1), "unexpected_field"),
        (lambda r: r["patient"].pop("sex"), "patient.sex"),
    ],
)
def test_invalid_record_is_a_problem_naming_the_field_and_nothing_is_stored(stack, example_record, mutate, field) -> None:  # noqa: ANN001
    record = _with_id(example_record, f"e2e-invalid-{field}")
    mutate(record)
    response = httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in [error["field"] for error in problem["errors"]]
    assert all(error["rule"] and error["message"] for error in problem["errors"])
    assert httpx.get(f"{stack.base()}/v1/recurrences/{record['recurrence_id']}", headers=stack.auth_headers()).status_code == 404


def test_recommendation_is_a_problem_404_until_it_exists(stack) -> None:  # noqa: ANN001
    response = httpx.get(f"{stack.base()}/v1/recurrences/never-recorded/recommendation", headers=stack.auth_headers())
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_health_and_metrics_on_every_service(stack) -> None:  # noqa: ANN001
    for service in ("gateway", "scoring", "evidence", "recommendation"):
        live = httpx.get(stack.base(service) + "/livez")
        assert live.status_code == 200 and live.json()["service"] == service  # each port is its service's
        ready = httpx.get(stack.base(service) + "/readyz").json()
        assert ready["service"] == service and ready["checks"]["database"] is True
        metrics = httpx.get(stack.base(service) + "/metrics").text
        assert "rnpc_outbox_pending" in metrics


def test_sync_scores_equal_the_workers_stored_scores(stack, example_record) -> None:  # noqa: ANN001
    import asyncio

    from sqlalchemy import text

    from rnpc_shared.db import make_engine

    record = _with_id(example_record, "e2e-scores-1")
    assert httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record).status_code == 202
    wait_until(lambda: _recommendation(stack, "e2e-scores-1"), 60, "the recommendation")

    async def stored() -> dict[str, Any]:
        engine = make_engine(stack.urls["scoring"])
        async with engine.connect() as connection:
            row = (await connection.execute(text("SELECT scores FROM score_sets WHERE recurrence_id = 'e2e-scores-1'"))).scalar_one()
        await engine.dispose()
        return row if isinstance(row, dict) else __import__("json").loads(row)

    synchronous = httpx.post(f"{stack.base()}/v1/scores", headers=stack.auth_headers(), json=record)
    assert synchronous.status_code == 200
    assert synchronous.json() == asyncio.run(stored())
    assert set(synchronous.json()["results"]) == {
        "interval_since_rt", "ajcc8_stage", "eqd2_prior_course", "eqd2_planned_course", "cumulative_gtv_dose",
        "li2018_prognostic_index", "ward2018_rpa", "tumour_volume", "lethal_necrosis_factors",
        "srs_suitability", "surgical_stage", "markers",
    }


def test_scoring_parameters_are_validated_and_echoed(stack, example_record) -> None:  # noqa: ANN001
    response = httpx.post(f"{stack.base()}/v1/scores", headers=stack.auth_headers(), params={"alpha_beta_tumour_gy": 8}, json=example_record)
    assert response.status_code == 200
    assert response.json()["parameters"]["alpha_beta_tumour_gy"] == 8
    bad = httpx.post(f"{stack.base()}/v1/scores", headers=stack.auth_headers(), params={"recovery_fraction": 1.5}, json=example_record)
    assert bad.status_code == 422
    assert "recovery_fraction" in [e["field"].split(".")[-1] for e in bad.json()["errors"]]


def test_evidence_endpoints_serve_the_migrated_evidence_base(stack) -> None:  # noqa: ANN001
    from rnpc_evidence.domain.catalogue import evidence_version, load_studies

    everything = httpx.get(f"{stack.base()}/v1/evidence/studies", headers=stack.auth_headers()).json()
    assert everything["evidence_version"] == evidence_version()
    assert sorted(s["study_id"] for s in everything["studies"]) == sorted(s.study_id for s in load_studies())

    srs_os = httpx.get(f"{stack.base()}/v1/evidence/studies", headers=stack.auth_headers(), params={"modality": "srs", "outcome": "OS"}).json()
    assert srs_os["count"] > 0
    assert all(s["modality"] == "srs" and any(o["metric"] == "OS" for o in s["outcomes"]) for s in srs_os["studies"])

    summary = httpx.get(f"{stack.base()}/v1/evidence/summary", headers=stack.auth_headers(), params={"modality": "reimrt"}).json()
    assert summary["evidence_version"] == evidence_version()
    subgroups = {(p["metric"], p["subgroup"]) for p in summary["pooled"]}
    assert {("grade5_toxicity", "endemic"), ("grade5_toxicity", "non_endemic")} <= subgroups

    bad = httpx.get(f"{stack.base()}/v1/evidence/studies", headers=stack.auth_headers(), params={"modality": "laser"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.modality"


def test_schedule_catalogue_computes_eqd2_at_the_requested_alpha_beta(stack) -> None:  # noqa: ANN001
    schedules = httpx.get(f"{stack.base()}/v1/schedules", headers=stack.auth_headers()).json()["schedules"]
    hyper = next(s for s in schedules if s["total_dose_gy"] == 65 and s["fractions"] == 54)
    eqd2 = {e["alpha_beta_gy"]: e["eqd2_gy"] for e in hyper["eqd2"]}
    assert eqd2[10.0] == round(65 * (65 / 54 + 10) / 12, 1)  # You 2023 schedule, MODELS.md §2
    assert eqd2[3.0] == round(65 * (65 / 54 + 3) / 5, 1)
    at_two = httpx.get(f"{stack.base()}/v1/schedules", headers=stack.auth_headers(), params={"alpha_beta_gy": 2}).json()["schedules"]
    assert {e["alpha_beta_gy"] for s in at_two for e in s["eqd2"]} == {2.0}
    assert httpx.get(f"{stack.base()}/v1/schedules", headers=stack.auth_headers(), params={"alpha_beta_gy": -1}).status_code == 422


def test_a_dead_lettered_event_shows_on_the_case_with_its_reason(stack, example_record) -> None:  # noqa: ANN001
    import asyncio

    from rnpc_shared.contracts.events import TOPIC_SCORES_COMPUTED, new_event
    from rnpc_shared.contracts.record import RecurrenceRecord
    from rnpc_shared.kafka.producer import EventProducer
    from rnpc_shared.settings import ServiceSettings

    record = _with_id(example_record, "e2e-dlq-1")
    assert httpx.post(f"{stack.base()}/v1/recurrences", headers=stack.auth_headers(), json=record).status_code == 202
    wait_until(lambda: _recommendation(stack, "e2e-dlq-1"), 60, "the recommendation")

    async def publish_broken_scores() -> None:
        # The reference is right, the scores are not: the stages that read scores must dead-letter
        # it, and the gateway (which reads only the reference) must refuse a second scoring result.
        content_hash = RecurrenceRecord.model_validate(record).content_hash()
        broken = new_event(source="urn:test", type_=TOPIC_SCORES_COMPUTED, subject="e2e-dlq-1",
                           data={"recurrence_id": "e2e-dlq-1", "version": 1, "content_hash": content_hash,
                                 "scores": {"results": "not a mapping"}, "result_hash": "0" * 64},
                           correlation_id=None)
        producer = EventProducer(ServiceSettings(**stack.broker.connection.settings_fields()))
        await producer.start()
        try:
            await producer.send(TOPIC_SCORES_COMPUTED, key="e2e-dlq-1", value=broken.model_dump_json().encode(), headers=[])
        finally:
            await producer.stop()

    asyncio.run(publish_broken_scores())
    # Every consumer of the topic rejects it: evidence and recommendation (which join the scores)
    # and the gateway's stage tracking (provenance: a scoring result other than the recorded one).
    case = wait_until(
        lambda: len((c := httpx.get(f"{stack.base()}/v1/recurrences/e2e-dlq-1", headers=stack.auth_headers()).json())["dead_letters"]) == 3 and c,
        60,
        "the three dead letters to reach the gateway",
    )
    notices = {notice["stage"]: notice for notice in case["dead_letters"]}
    assert {stage: n["error_type"] for stage, n in notices.items()} == {
        "evidence": "ValidationError", "recommendation": "ValidationError", "gateway": "provenance",
    }
    for notice in notices.values():
        assert notice["version"] == 1 and notice["original_topic"] == TOPIC_SCORES_COMPUTED
    assert "results" in notices["evidence"]["reason"] and "scoring result" in notices["gateway"]["reason"]
    # A later failure never overwrites a stage that already succeeded.
    assert case["versions"][0]["stages"]["evidence"] == "done"
