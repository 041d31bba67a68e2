"""Matching evidence to a case: every local modality, deterministic, case notes with sources."""

from __future__ import annotations

import random
import re

import pytest

from rnpc_evidence.domain.catalogue import evidence_version, load_studies
from rnpc_evidence.domain.matching import match_evidence
from rnpc_evidence.domain.pooling import pooled_summary
from rnpc_shared.contracts.record import LOCAL_MODALITIES, Modality, RecurrenceRecord
from rnpc_shared.contracts.scores import ModelStatus, ScoreResult, Scores

NO_SCORES = Scores(results={}, models_version="test")


def record(example: dict, **recurrence: object) -> RecurrenceRecord:
    example["recurrence"].update(recurrence)
    return RecurrenceRecord.model_validate(example)


def score(model: str, **fields: object) -> ScoreResult:
    return ScoreResult(model=model, version="test", status=ModelStatus.provisional, citation="test", **fields)


def test_every_local_modality_in_contract_order(example_record_json: dict) -> None:
    bundle = match_evidence(record(example_record_json), NO_SCORES, load_studies())
    assert bundle.evidence_version == evidence_version() == "seed-tables/2026.11.1"
    assert list(bundle.by_modality) == list(LOCAL_MODALITIES)
    for modality, evidence in bundle.by_modality.items():
        assert evidence.modality == modality and evidence.notes
        assert [s.study_id for s in evidence.studies] == sorted(s.study_id for s in evidence.studies)
        assert all(s.modality == modality for s in evidence.studies)
    for surgery_without_rows in (Modality.tors, Modality.neck_dissection):
        assert bundle.by_modality[surgery_without_rows].studies == []
        assert bundle.by_modality[surgery_without_rows].pooled == []
    assert any("5-year OS in 41% [63]" in note for note in bundle.by_modality[Modality.neck_dissection].notes)


def test_nothing_is_dropped_and_pooled_figures_match_the_summary(example_record_json: dict) -> None:
    studies = load_studies()
    bundle = match_evidence(record(example_record_json), NO_SCORES, studies)
    attached = [s.study_id for e in bundle.by_modality.values() for s in e.studies]
    assert sorted(attached) == sorted(s.study_id for s in studies)
    pooled = [p for e in bundle.by_modality.values() for p in e.pooled]
    assert [p.model_dump() for p in pooled] == [p.model_dump() for p in pooled_summary(studies)]
    reimrt_subgroups = {p.subgroup for p in bundle.by_modality[Modality.reimrt].pooled}
    assert {"endemic", "non_endemic"} <= reimrt_subgroups


def test_same_inputs_give_byte_identical_output(example_record_json: dict) -> None:
    case = record(example_record_json)
    studies = list(load_studies())
    shuffled = studies[:]
    random.Random(11).shuffle(shuffled)
    first = match_evidence(case, NO_SCORES, studies).model_dump_json()
    assert match_evidence(case, NO_SCORES, load_studies()).model_dump_json() == first
    assert match_evidence(case, NO_SCORES, shuffled).model_dump_json() == first


def test_rt2_case_gets_the_stage_specific_enp_figure(example_record_json: dict) -> None:
    notes = match_evidence(record(example_record_json), NO_SCORES, load_studies()).by_modality[Modality.enp].notes
    assert any("2-year OS 87% after ENP for rT2" in note for note in notes)
    assert not any("outside the seed's ENP indications" in note for note in notes)


def test_rt3_case_gets_both_seed_statements(example_record_json: dict) -> None:
    bundle = match_evidence(record(example_record_json, t_category="T3"), NO_SCORES, load_studies())
    notes = bundle.by_modality[Modality.enp].notes
    assert any("in T1-T3 recurrent disease" in note and "rT1–T2" in note for note in notes)
    assert not any("outside the seed's ENP indications" in note for note in notes)


def test_rt4_case_keeps_the_studies_and_adds_notes(example_record_json: dict) -> None:
    bundle = match_evidence(record(example_record_json, t_category="T4"), NO_SCORES, load_studies())
    enp = bundle.by_modality[Modality.enp]
    assert len(enp.studies) == 9  # 8 Table 1 rows + Liu 2021: not stratified by rT, so kept
    assert any("outside the seed's ENP indications (rT1–T2)" in note for note in enp.notes)
    assert any("2-year OS 38% after ENP for rT4" in note for note in enp.notes)
    for modality in (Modality.srs, Modality.sbrt, Modality.brachytherapy):
        assert any("early-stage, small recurrences" in note for note in bundle.by_modality[modality].notes)


def test_case_features_and_scores_become_notes(example_record_json: dict) -> None:
    example_record_json["recurrence"]["extension"]["foramen_lacerum"] = True  # with Rosenmüller: [98]
    example_record_json["recurrence"]["extension"]["ica_encasement"] = True
    scores = Scores(
        results={
            "li2018_prognostic_index": score("li2018_prognostic_index", computable=True, value=180, category="low_risk"),
            "ward2018_rpa": score("ward2018_rpa", computable=False, missing_inputs=["resected"]),
        },
        models_version="test",
    )
    bundle = match_evidence(record(example_record_json, gtv_volume_cm3=40.0), scores, load_studies())
    reimrt = bundle.by_modality[Modality.reimrt].notes
    assert any("Case GTV 40 cm³ (> 38 cm³)" in note for note in reimrt)
    assert any("hyperfractionated" in note for note in reimrt)  # the example plans 65 Gy/54 fx BID
    assert "Score li2018_prognostic_index = 180, category low_risk (provisional)." in reimrt
    assert "Score ward2018_rpa: not computable (missing resected)." in reimrt
    assert any("fatal hemorrhage" in note for note in bundle.by_modality[Modality.sbrt].notes)
    assert any("extracranial–intracranial bypass" in note for note in bundle.by_modality[Modality.msnp].notes)


def test_regional_recurrence_is_flagged_on_local_series(example_record_json: dict) -> None:
    case = record(example_record_json, site="regional", t_category=None, n_category="N1")
    bundle = match_evidence(case, NO_SCORES, load_studies())
    assert any("isolated regional recurrence" in note for note in bundle.by_modality[Modality.reimrt].notes)
    assert not any("isolated regional recurrence" in n for n in bundle.by_modality[Modality.neck_dissection].notes)


@pytest.mark.parametrize("t_category", ["T1", "T2", "T3", "T4"])
def test_every_quoted_note_is_verbatim(example_record_json: dict, quotable_text: str, t_category: str) -> None:
    example_record_json["recurrence"]["extension"].update(foramen_lacerum=True, ica_encasement=True)
    bundle = match_evidence(record(example_record_json, t_category=t_category), NO_SCORES, load_studies())
    for evidence in bundle.by_modality.values():
        for note in evidence.notes:
            for quote in re.findall(r'"([^"]+)"', note):
                assert quote in quotable_text, (evidence.modality, quote)


def test_case_notes_are_also_listed_apart(example_record_json: dict) -> None:
    """Issue 9 item 8: the recommendation carries only the case-specific notes."""
    bundle = match_evidence(record(example_record_json), NO_SCORES, load_studies())
    enp = bundle.by_modality[Modality.enp]
    assert enp.case_notes and set(enp.case_notes) <= set(enp.notes)
    assert not any(note.startswith("Seed §4.2: \"Indications") for note in enp.case_notes)
