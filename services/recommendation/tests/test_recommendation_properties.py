"""Properties over generated cases: shape, ranking, provisional safety and determinism."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rnpc_shared.contracts.evidence import EvidenceBundle
from rnpc_shared.contracts.recommendation import OptionStatus, Recommendation
from rnpc_shared.contracts.record import (
    LOCAL_MODALITIES,
    Modality,
    RecurrenceRecord,
    canonical_hash,
)
from rnpc_shared.contracts.scores import Scores

from rnpc_recommendation.domain import recommend

ISSUED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DIAGNOSED_ON = date(2026, 11, 18)  # the base record's diagnosis date
TRI = st.sampled_from([None, True, False])
T_CATEGORIES = ["T0", "T1", "T2", "T3", "T4"]
EXTENSION_FLAGS = (
    "adjacent_soft_tissue", "skull_base_bone", "cervical_vertebra", "pterygoid_structures",
    "paranasal_sinuses", "cranial_nerves", "intracranial", "ica_encasement",
    "fossa_of_rosenmuller", "foramen_lacerum", "sphenoid_sinus", "nasal_cavity", "oropharynx",
    "hypopharynx", "orbit", "parotid", "beyond_lateral_pterygoid",
)
PLANNED_COURSES = [
    None,
    {"total_dose_gy": 65.0, "fractions": 54, "fractions_per_day": 2},
    {"total_dose_gy": 70.0, "fractions": 35, "fractions_per_day": 1},
    {"total_dose_gy": 30.0, "fractions": 5, "fractions_per_day": 1},
]
EXCLUDING = {OptionStatus.not_recommended, OptionStatus.contraindicated}
STATUS_CLAIM = re.compile(r"(?<!not )(?<!never )\brecommended\b")


@st.composite
def record_overrides(draw: st.DrawFn) -> dict[str, Any]:
    """Dotted-path overrides of the base record spanning every input a rule reads."""
    site = draw(st.sampled_from(["local", "regional", "locoregional"]))
    t_choices = [None, *T_CATEGORIES] if site == "regional" else T_CATEGORIES
    rt_end_on = DIAGNOSED_ON - timedelta(days=draw(st.integers(40, 3000)))
    neck = st.fixed_dictionaries({"node_count": st.one_of(st.none(), st.integers(0, 5)),
                                  "level_i": TRI})
    available = st.lists(st.sampled_from([m.value for m in Modality]), unique=True)
    o: dict[str, Any] = {
        "recurrence.site": site,
        "recurrence.t_category": draw(st.sampled_from(t_choices)),
        "recurrence.n_category": draw(st.sampled_from(["N0", "N1", "N2", "N3"])),
        "recurrence.m_category": draw(st.sampled_from([None, "M0", "M1"])),
        "recurrence.gtv_volume_cm3": draw(st.sampled_from([None, 2.0, 9.5, 10.0, 25.0, 60.0])),
        "recurrence.resectable": draw(TRI),
        "recurrence.keratinizing": draw(TRI),
        "recurrence.surgical_stage": draw(st.sampled_from([None, "I", "II", "III", "IV"])),
        "recurrence.extension.parapharyngeal": draw(
            st.sampled_from([None, "none", "superficial", "deep"])),
        "recurrence.neck": draw(st.one_of(st.none(), neck)),
        "histology": draw(st.sampled_from([None, "who_type_1", "who_type_2", "who_type_3"])),
        "patient.age_years": draw(st.integers(12, 90)),
        "patient.sex": draw(st.sampled_from(["male", "female"])),
        "patient.kps": draw(st.one_of(st.none(), st.sampled_from(range(0, 101, 10)))),
        "patient.ecog": draw(st.one_of(st.none(), st.integers(0, 4))),
        "patient.organ_dysfunction": draw(TRI),
        "restaging.mri_on": draw(st.sampled_from([None, "2026-11-10"])),
        "restaging.pet_ct_on": draw(st.sampled_from([None, "2026-11-12"])),
        "prior_treatment.rt_end_on": rt_end_on.isoformat(),
        "prior_treatment.rt_total_dose_gy": float(draw(st.integers(50, 80))),
        "prior_treatment.rt_fractions": draw(st.integers(25, 40)),
        "prior_treatment.grade3_toxicity": draw(TRI),
        "prior_treatment.mucosal_necrosis": draw(TRI),
        "prior_treatment.resected_before_reirradiation": draw(TRI),
        "context.resource_mode": draw(st.sampled_from(["normal", "constrained"])),
        "context.available_modalities": draw(st.one_of(st.none(), available)),
        "planned_reirradiation": draw(st.sampled_from(PLANNED_COURSES)),
    }
    for flag in EXTENSION_FLAGS:
        o[f"recurrence.extension.{flag}"] = draw(TRI)
    if draw(st.booleans()):
        o["recurrence.extension"] = None
    return o


@st.composite
def exact_score_overrides(draw: st.DrawFn) -> dict[str, Any]:
    """Exact results the stand-in would not produce from the record alone (conflicts, unknowns)."""
    overrides: dict[str, Any] = {}
    if draw(st.booleans()):
        derived = draw(st.sampled_from([None, "T1", "T2", "T3", "T4"]))
        conflicts = draw(st.lists(st.just("entered T2, flags give T4"), max_size=1))
        overrides["ajcc8_stage"] = {
            "details": {"t_category_derived": derived, "conflicts": conflicts}
        }
    for model_id in ("interval_since_rt", "ward2018_rpa", "cumulative_gtv_dose"):
        if draw(st.integers(0, 4)) == 0:
            overrides[model_id] = "unknown"
    return overrides


def _case(
    kit: SimpleNamespace, overrides: dict[str, Any], score_overrides: dict[str, Any]
) -> tuple[RecurrenceRecord, Scores, EvidenceBundle]:
    record = kit.build_record(overrides)
    return record, kit.build_scores(record, score_overrides), kit.build_evidence()


def _local_recommended(rec: Recommendation) -> bool:
    return any(
        o.status == OptionStatus.recommended and o.modality in LOCAL_MODALITIES
        for o in rec.options
    )


@settings(max_examples=300, deadline=None)
@given(overrides=record_overrides(), score_overrides=exact_score_overrides())
def test_every_option_is_complete_and_ranked(
    kit: SimpleNamespace, overrides: dict[str, Any], score_overrides: dict[str, Any]
) -> None:
    record, scores, evidence = _case(kit, overrides, score_overrides)
    rec = recommend(record, scores, evidence, ISSUED_AT)

    assert sorted(o.modality for o in rec.options) == sorted(Modality)  # all 12, once each
    assert [o.rank for o in rec.options] == list(range(1, 13))  # ranks 1..12, sorted
    for o in rec.options:
        assert o.status in OptionStatus and o.reasons  # a status and at least one reason
        assert all(r.rule and r.text and r.source for r in o.reasons)

    available = record.context.available_modalities if record.context else None
    for o in rec.options:
        lacked = (
            available is not None
            and o.modality in LOCAL_MODALITIES
            and o.modality not in available
        )
        assert (o.status == OptionStatus.unavailable) <= lacked  # unavailable only if lacked
        if lacked:
            assert any(r.rule == "R8.availability" for r in o.reasons)  # never silently dropped

    if record.recurrence.m_category == "M1":
        assert rec.status == "not_local_candidate"
        assert not _local_recommended(rec)
    elif rec.required_workup:
        assert rec.status == "workup_incomplete"
        assert not _local_recommended(rec)
    Recommendation.model_validate_json(rec.model_dump_json())  # round-trips through the contract
    for o in rec.options:  # issue 9 item 6: a provisional model never decides a status
        assert not any(d.status == "provisional" and d.role == "status" for d in o.depends_on)
        if o.status != OptionStatus.recommended:  # item 7: text never contradicts the status
            for reason in o.reasons:
                text = reason.text.replace("clinical status: recommended", "")
                assert not STATUS_CLAIM.search(text), (o.modality, o.status, reason.text)


PROVISIONAL_VARIANTS = list(itertools.product(
    [None, "low_risk", "high_risk"],  # Li 2018 category (None = not computable)
    [None, "candidate", "not_candidate"],  # SRS suitability
    [None, 0, 4],  # lethal-necrosis factor count
))


@settings(max_examples=120, deadline=None)
@given(overrides=record_overrides(), score_overrides=exact_score_overrides())
def test_provisional_outputs_never_exclude_an_option(
    kit: SimpleNamespace, overrides: dict[str, Any], score_overrides: dict[str, Any]
) -> None:
    """Only provisional results vary: which options are excluded must not move (MODELS.md)."""
    record, scores, evidence = _case(kit, overrides, score_overrides)
    excluded_sets = set()
    for li, srs, lethal in PROVISIONAL_VARIANTS:
        variant = kit.with_provisional(scores, li=li, srs=srs, lethal=lethal)
        rec = recommend(record, variant, evidence, ISSUED_AT)
        excluded = {(o.modality, o.status) for o in rec.options if o.status in EXCLUDING}
        excluded_sets.add(frozenset(excluded))
    assert len(excluded_sets) == 1


@settings(max_examples=60, deadline=None)
@given(overrides=record_overrides(), score_overrides=exact_score_overrides())
def test_deterministic_apart_from_issued_at(
    kit: SimpleNamespace, overrides: dict[str, Any], score_overrides: dict[str, Any]
) -> None:
    record, scores, evidence = _case(kit, overrides, score_overrides)
    first = recommend(record, scores, evidence, ISSUED_AT)
    again = recommend(record, scores, evidence, ISSUED_AT)
    later = recommend(record, scores, evidence, ISSUED_AT + timedelta(days=3))
    assert first.model_dump_json() == again.model_dump_json()  # byte-identical

    def without_issued_at(rec: Recommendation) -> str:
        dumped = rec.model_dump(mode="json")
        return json.dumps({key: value for key, value in dumped.items() if key != "issued_at"})

    assert without_issued_at(first) == without_issued_at(later)
    assert first.model_dump_json() != later.model_dump_json()


def test_input_hash_and_versions(kit: SimpleNamespace) -> None:
    record, scores, evidence = _case(kit, {}, {})
    rec = recommend(record, scores, evidence, ISSUED_AT)
    expected = canonical_hash({
        "record": canonical_hash(record.model_dump(mode="json")),
        "scores": canonical_hash(scores.model_dump(mode="json")),
        "evidence_version": evidence.evidence_version,
    })
    assert rec.input_hash == expected
    # The pipeline passes the hashes its events carry: the same hash.
    assert recommend(
        record, scores, evidence, ISSUED_AT, record_hash=record.content_hash(),
        scores_hash=canonical_hash(scores.model_dump(mode="json")),
    ).input_hash == expected
    assert rec.versions.models == kit.MODELS_VERSION
    assert rec.versions.evidence == kit.EVIDENCE_VERSION
    assert rec.versions.rules.startswith("rules/")
    other_record, _, _ = _case(kit, {"patient.age_years": 53}, {})
    assert recommend(other_record, scores, evidence, ISSUED_AT).input_hash != rec.input_hash


# Issue 9 item 5: every hazard or eligibility input that may be null, with its favourable known
# value ("false" for a hazard flag; resectable: true; M: M0; performance status: KPS 90).
FAVOURABLE_THEN_NULL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ica_encasement": ({"recurrence.extension.ica_encasement": False},
                       {"recurrence.extension.ica_encasement": None}),
    "foramen_lacerum": ({"recurrence.extension.foramen_lacerum": False},
                        {"recurrence.extension.foramen_lacerum": None}),
    "fossa_of_rosenmuller": ({"recurrence.extension.fossa_of_rosenmuller": False},
                             {"recurrence.extension.fossa_of_rosenmuller": None}),
    "mucosal_necrosis": ({"prior_treatment.mucosal_necrosis": False},
                         {"prior_treatment.mucosal_necrosis": None}),
    "grade3_toxicity": ({"prior_treatment.grade3_toxicity": False},
                        {"prior_treatment.grade3_toxicity": None}),
    "resectable": ({"recurrence.resectable": True}, {"recurrence.resectable": None}),
    "m_category": ({"recurrence.m_category": "M0"}, {"recurrence.m_category": None}),
    "performance_status": ({"patient.kps": 90, "patient.ecog": None},
                           {"patient.kps": None, "patient.ecog": None}),
}
# Lower is better. Systemic therapy and best supportive care are the fallbacks whose standing
# rises exactly when a curative option's basis weakens: for them the property is reversed.
_REIRRADIATION = {Modality.reimrt, Modality.srs, Modality.sbrt, Modality.proton,
                  Modality.carbon_ion, Modality.brachytherapy}
_SURGERY = {Modality.enp, Modality.tors, Modality.msnp, Modality.neck_dissection}
# The options each input concerns: when such an option moves back, a neighbour moving up past it
# is not an improvement of the neighbour (ranks are relative).
CONCERNS: dict[str, set[Modality]] = {
    "ica_encasement": _REIRRADIATION | {Modality.enp, Modality.tors, Modality.msnp},
    "foramen_lacerum": _REIRRADIATION | {Modality.enp},
    "fossa_of_rosenmuller": _REIRRADIATION,
    "mucosal_necrosis": {Modality.reimrt},
    "grade3_toxicity": {Modality.reimrt},
    "resectable": _SURGERY,
    "m_category": set(LOCAL_MODALITIES),
    "performance_status": set(LOCAL_MODALITIES),
}
STATUS_VALUE = {"recommended": 0, "consider": 1, "unavailable": 1, "not_recommended": 2,
                "contraindicated": 3}
FALLBACKS = {Modality.systemic_therapy, Modality.best_supportive_care}


@settings(max_examples=80, deadline=None)
@given(overrides=record_overrides())
def test_unknown_never_makes_an_option_better(kit: SimpleNamespace, overrides: dict[str, Any]) -> None:
    """Changing a hazard/eligibility input from its favourable value to null never improves a
    local curative option's status, never lets it overtake an option the input does not concern
    (unless that option's status worsened), and never demotes a fallback."""
    evidence = kit.build_evidence()
    for field_name, (known, unknown) in FAVOURABLE_THEN_NULL.items():
        before = _recommend(kit, {**overrides, **known}, evidence)
        after = _recommend(kit, {**overrides, **unknown}, evidence)
        value_a = {o.modality: STATUS_VALUE[o.status] for o in before.options}
        value_b = {o.modality: STATUS_VALUE[o.status] for o in after.options}
        rank_a = {o.modality: o.rank for o in before.options}
        rank_b = {o.modality: o.rank for o in after.options}
        for m in Modality:
            if m in FALLBACKS:
                assert value_b[m] <= value_a[m], (field_name, m)
                continue
            assert value_b[m] >= value_a[m], (field_name, m, value_a[m], value_b[m])
            for p in set(Modality) - CONCERNS[field_name]:
                overtakes = rank_a[m] > rank_a[p] and rank_b[m] < rank_b[p]
                assert not overtakes or value_b[p] > value_a[p], (field_name, m, p)


def _recommend(kit: SimpleNamespace, overrides: dict[str, Any], evidence: EvidenceBundle
               ) -> Recommendation:
    record = kit.build_record(overrides)
    return recommend(record, kit.build_scores(record), evidence, ISSUED_AT)
