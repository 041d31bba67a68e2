"""Event contracts: small events (a case's evidence names its base), a size budget for the
recommendation, rolling-deploy safety.

The events are built exactly as the services build them (the same pure domain functions and
payload models) for the example record, then read the way today's consumers read them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from rnpc_evidence.domain.catalogue import load_studies
from rnpc_evidence.domain.matching import case_notes, evidence_base, match_evidence
from rnpc_recommendation.domain import recommend
from rnpc_recommendation.service import summarise
from rnpc_scoring.domain import compute_scores
from rnpc_shared.contracts.events import (
    RECOMMENDATION_EVENT_BUDGET_BYTES,
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecommendationIssued,
    RecordRef,
    RecurrenceRecorded,
    ScoresComputed,
    StageResult,
    new_event,
    read_event,
)
from rnpc_shared.contracts.evidence import CaseEvidence
from rnpc_shared.contracts.record import RecurrenceRecord, canonical_hash, read_tolerant
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import utc_now

# Who reads which topic, with which payload model (services/*/app.py).
READERS: dict[str, list[tuple[str, type[BaseModel]]]] = {
    TOPIC_RECURRENCE_RECORDED: [("scoring", RecurrenceRecorded), ("evidence", RecurrenceRecorded), ("recommendation", RecurrenceRecorded)],
    TOPIC_SCORES_COMPUTED: [("evidence", ScoresComputed), ("recommendation", ScoresComputed), ("gateway", StageResult)],
    TOPIC_EVIDENCE_MATCHED: [("recommendation", EvidenceMatched), ("gateway", StageResult)],
    TOPIC_EVIDENCE_BASE: [("recommendation", EvidenceBaseAnnounced)],
    TOPIC_RECOMMENDATION_ISSUED: [("gateway", RecommendationIssued)],
}


@pytest.fixture(scope="module")
def pipeline_events(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    example = json.loads((request.config.rootpath / "examples" / "recurrence_record.example.json").read_text())
    record = RecurrenceRecord.model_validate(example)
    ref = {"recurrence_id": record.recurrence_id, "version": record.version, "content_hash": record.content_hash()}
    scores = compute_scores(record, ScoringParameters())
    scores_json = scores.model_dump(mode="json")
    base = evidence_base(load_studies())
    evidence_json = CaseEvidence(
        evidence_version=base.evidence_version, base_hash=base.content_hash(), case_notes=case_notes(record, scores)
    ).model_dump(mode="json")
    recommendation = recommend(record, scores, base.bundle(case_notes(record, scores)), issued_at=utc_now())
    return {
        TOPIC_RECURRENCE_RECORDED: ref | {"record": record.model_dump(mode="json")},
        TOPIC_SCORES_COMPUTED: ref | {"scores": scores_json, "result_hash": canonical_hash(scores_json)},
        TOPIC_EVIDENCE_MATCHED: ref
        | {"evidence": evidence_json, "result_hash": canonical_hash(evidence_json), "scores_hash": canonical_hash(scores_json)},
        TOPIC_EVIDENCE_BASE: {"base": base.model_dump(mode="json"), "base_hash": base.content_hash()},
        TOPIC_RECOMMENDATION_ISSUED: ref
        | {
            "recommendation": recommendation.model_dump(mode="json"),
            "record_summary": summarise(record).model_dump(mode="json"),
            "scores_hash": canonical_hash(scores_json),
            "evidence_hash": canonical_hash(evidence_json),
        },
    }


def _event_bytes(topic: str, data: dict[str, Any]) -> int:
    event = new_event(source="urn:rnpc:test", type_=topic, subject="x", data=data, correlation_id=None)
    return len(event.model_dump_json().encode())


def test_events_are_small_no_stage_re_embeds_an_earlier_result(pipeline_events: dict[str, dict[str, Any]]) -> None:
    assert "record" not in pipeline_events[TOPIC_SCORES_COMPUTED]
    assert {"record", "scores"}.isdisjoint(pipeline_events[TOPIC_EVIDENCE_MATCHED])
    assert {"record", "scores", "evidence"}.isdisjoint(pipeline_events[TOPIC_RECOMMENDATION_ISSUED])
    for topic, data in pipeline_events.items():
        if topic != TOPIC_EVIDENCE_BASE:  # one per evidence version, not per case
            RecordRef.model_validate(data)  # each carries its reference


def test_a_cases_evidence_names_its_base_and_the_recommendation_rebuilds_the_whole_evidence(
    pipeline_events: dict[str, dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    matched = pipeline_events[TOPIC_EVIDENCE_MATCHED]
    announced = EvidenceBaseAnnounced.model_validate(pipeline_events[TOPIC_EVIDENCE_BASE])
    assert "studies" not in json.dumps(matched) and "pooled" not in json.dumps(matched)
    assert _event_bytes(TOPIC_EVIDENCE_MATCHED, matched) * 10 < _event_bytes(TOPIC_EVIDENCE_BASE, pipeline_events[TOPIC_EVIDENCE_BASE])
    evidence = EvidenceMatched.model_validate(matched).evidence
    assert (evidence.evidence_version, evidence.base_hash) == (announced.base.evidence_version, announced.base_hash)
    assert announced.base.content_hash() == announced.base_hash
    # What the recommendation joins (base + the case's notes) is what the evidence service matched.
    example = json.loads((request.config.rootpath / "examples" / "recurrence_record.example.json").read_text())
    record = RecurrenceRecord.model_validate(example)
    scores = compute_scores(record, ScoringParameters())
    assert announced.base.bundle(evidence.case_notes) == match_evidence(record, scores, load_studies())


def test_the_recommendation_event_is_self_contained_within_its_size_budget(pipeline_events: dict[str, dict[str, Any]]) -> None:
    data = pipeline_events[TOPIC_RECOMMENDATION_ISSUED]
    size = _event_bytes(TOPIC_RECOMMENDATION_ISSUED, data)
    print("\nevent sizes (bytes): " + ", ".join(f"{t}={_event_bytes(t, d)}" for t, d in pipeline_events.items()))
    assert size <= RECOMMENDATION_EVENT_BUDGET_BYTES, size
    issued = RecommendationIssued.model_validate(data)
    assert issued.record_summary.recurrence_id == issued.recommendation.recurrence_id
    assert all(option.reasons for option in issued.recommendation.options)  # its basis travels with it


def _add_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The event as a newer producer might send it: an optional field added at every level."""
    newer = copy.deepcopy(data) | {"added_top_level": {"any": "thing"}}
    for path in (
        ("record",),
        ("record", "patient"),
        ("record", "recurrence"),
        ("scores",),
        ("evidence",),
        ("base",),
        ("base", "by_modality", "enp"),
        ("recommendation",),
        ("recommendation", "versions"),
        ("record_summary",),
    ):
        node: Any = newer
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node["added_in_a_newer_version"] = [1, 2, 3]
    for option in newer.get("recommendation", {}).get("options", []):
        option["added_in_a_newer_version"] = True
    return newer


def _consumed(topic: str, model: type[BaseModel], data: dict[str, Any], **extensions: str) -> BaseModel:
    """The payload as a consumer reads it: from the event's bytes on the topic."""
    event = new_event(source="urn:rnpc:test", type_=topic, subject="x", data=data, correlation_id=None)
    return read_event(model, event.model_dump_json().encode() if not extensions else json.dumps(event.model_dump(mode="json") | extensions))[1]


@pytest.mark.parametrize("topic", sorted(READERS))
def test_an_event_from_a_newer_producer_with_added_fields_is_read_by_todays_consumers(
    topic: str, pipeline_events: dict[str, dict[str, Any]]
) -> None:
    newer = _add_fields(pipeline_events[topic])
    for _reader, model in READERS[topic]:
        today = _consumed(topic, model, pipeline_events[topic])
        assert today == read_tolerant(model, pipeline_events[topic])  # one pass reads what two did
        assert _consumed(topic, model, newer, addedextension="x") == today  # added fields ignored, nothing else changes


def test_strictness_stays_at_the_http_ingest(pipeline_events: dict[str, dict[str, Any]]) -> None:
    record = _add_fields(pipeline_events[TOPIC_RECURRENCE_RECORDED])["record"]
    with pytest.raises(ValidationError, match="added_in_a_newer_version"):
        RecurrenceRecord.model_validate(record)  # the ingest path: not read_tolerant
    # ...and without the reader context the added nested fields would dead-letter the event.
    with pytest.raises(ValidationError):
        RecurrenceRecorded.model_validate(_add_fields(pipeline_events[TOPIC_RECURRENCE_RECORDED]))


def test_a_reader_refuses_a_newer_event_for_its_real_errors_only(pipeline_events: dict[str, dict[str, Any]]) -> None:
    newer = _add_fields(pipeline_events[TOPIC_RECURRENCE_RECORDED])
    newer["record"]["version"] = 0  # a real error beside the added fields
    with pytest.raises(ValidationError) as refused:
        read_tolerant(RecurrenceRecorded, newer)
    assert [(error["loc"], error["type"]) for error in refused.value.errors()] == [(("record", "version"), "greater_than_equal")]
    with pytest.raises(ValidationError) as consumed:
        _consumed(TOPIC_RECURRENCE_RECORDED, RecurrenceRecorded, newer)
    assert [(error["loc"], error["type"]) for error in consumed.value.errors()] == [(("record", "version"), "greater_than_equal")]
    today = copy.deepcopy(pipeline_events[TOPIC_RECURRENCE_RECORDED])
    today["record"]["version"] = 0  # the same error in today's shape: refused in the one pass
    with pytest.raises(ValidationError) as one_pass:
        _consumed(TOPIC_RECURRENCE_RECORDED, RecurrenceRecorded, today)
    assert [(error["loc"], error["type"]) for error in one_pass.value.errors()] == [(("data", "record", "version"), "greater_than_equal")]
