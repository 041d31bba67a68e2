"""Issue 9: no unsafe option first on risky, stale or incomplete cases, and the whole basis on the
recommendation. Each test names the rule it exercises and that rule's source."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from rnpc_shared.contracts.events import RecommendationIssued, RecordSummary
from rnpc_shared.contracts.recommendation import Option, OptionStatus, Recommendation
from rnpc_shared.contracts.record import LOCAL_MODALITIES
from rnpc_shared.contracts.scores import Threshold

from rnpc_recommendation.domain import recommend
from rnpc_recommendation.domain.policy import Policy

ISSUED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
R, C, NR, U = "recommended", "consider", "not_recommended", "unavailable"
REIRRADIATION = ("reimrt", "srs", "sbrt", "proton", "carbon_ion", "brachytherapy")
HAEMORRHAGE = "fatal haemorrhage"


def option(rec: Recommendation, modality: str) -> Option:
    return next(o for o in rec.options if o.modality == modality)


def warnings_of(rec: Recommendation, modality: str) -> str:
    return " ".join(option(rec, modality).warnings)


def reasons_of(rec: Recommendation, modality: str) -> str:
    return " ".join(r.text for r in option(rec, modality).reasons)


def run(kit: SimpleNamespace, overrides: dict[str, Any], scores: dict[str, Any] | None = None,
        policy: Policy | None = None) -> Recommendation:
    record = kit.build_record(overrides)
    return recommend(record, kit.build_scores(record, scores), kit.build_evidence(), ISSUED_AT,
                     policy=policy)


# The issue's first case: rT4, ICA encasement, fossa of Rosenmüller deep to the foramen lacerum,
# carbon ions available, 18 months since RT (RT end 2022-03-15).
CARBON_CASE = {
    "diagnosed_on": "2023-09-20",
    "recurrence.t_category": "T4",
    "recurrence.extension.ica_encasement": True,
    "recurrence.extension.fossa_of_rosenmuller": True,
    "recurrence.extension.foramen_lacerum": True,
    "recurrence.extension.skull_base_bone": True,
    "recurrence.extension.cranial_nerves": True,
    "recurrence.gtv_volume_cm3": 20.0,
}
RT4_NOT_RESECTABLE = {
    "recurrence.t_category": "T4",
    "recurrence.extension.intracranial": True,
    "recurrence.extension.skull_base_bone": True,
    "recurrence.resectable": False,
    "recurrence.gtv_volume_cm3": 20.0,
    "patient.age_years": 50,
}


# --- the five cases of the issue, rebuilt ------------------------------------------------------


def test_case_1_carbon_is_consider_with_the_haemorrhage_warning(kit: SimpleNamespace) -> None:
    """R4.particles_experimental (seed §5.6) + R6.haemorrhage_hazard (seed §5.4 [98])."""
    rec = run(kit, CARBON_CASE)
    carbon = option(rec, "carbon_ion")
    assert carbon.status == C
    assert HAEMORRHAGE in warnings_of(rec, "carbon_ion").lower()
    assert "promising alternative" in reasons_of(rec, "carbon_ion")  # the reason, not a status
    for modality in REIRRADIATION:
        assert option(rec, modality).status != R
        assert "Risk of fatal haemorrhage" in warnings_of(rec, modality), modality
    assert rec.options[0].status != R


def test_case_2_stale_imaging_is_not_a_restaging(kit: SimpleNamespace) -> None:
    """R1.workup_gate (MODELS.md §5.1; seed §2): imaging before the prior RT ended."""
    rec = run(kit, {"restaging.mri_on": "2021-05-01", "restaging.pet_ct_on": "2021-05-03"})
    assert rec.status == "workup_incomplete"
    assert option(rec, "enp").status == C
    assert sum("not after the end of the prior RT" in item for item in rec.required_workup) == 2
    assert [o.rank for o in rec.options] == list(range(1, 13))  # options still shown


def test_case_3_kps_40_has_no_recommended_intensive_option(kit: SimpleNamespace) -> None:
    """R6.performance_status (Ward 2018, seed §3 [19]): KPS < 70 is adverse."""
    for overrides in ({"patient.kps": 40}, {**RT4_NOT_RESECTABLE, "patient.kps": 40}):
        rec = run(kit, overrides)
        for modality in LOCAL_MODALITIES:
            assert option(rec, modality).status != R, modality
            assert "KPS 40" in warnings_of(rec, modality) and "KPS < 70" in warnings_of(
                rec, modality)


def test_case_4_nulls_are_named_as_not_assessed(kit: SimpleNamespace) -> None:
    """R6.not_assessed + R6.haemorrhage_hazard + R6.lethal_necrosis: unknown is never absent."""
    rec = run(kit, {
        "recurrence.extension.ica_encasement": None,
        "recurrence.extension.foramen_lacerum": None,
        "prior_treatment.mucosal_necrosis": None,
    })
    for modality in REIRRADIATION:
        text = warnings_of(rec, modality)
        assert "Not assessed: ICA encasement/exposure" in text, modality
        assert "Not assessed: foramen lacerum invasion" in text, modality
        assert option(rec, modality).status != R
    assert "necrosis_before_reirradiation" in warnings_of(rec, "reimrt")  # Yu 2016 factor named
    assert "nasopharyngeal mucosal necrosis" in warnings_of(rec, "reimrt")
    missing = " ".join(rec.missing_assessments)
    assert "ICA encasement" in missing and "foramen lacerum" in missing
    assert "mucosal necrosis" in missing


def test_case_5_li_index_251_vs_252_changes_no_status(kit: SimpleNamespace) -> None:
    """R4.li2018_risk: a provisional model may reorder, never change a status (MODELS.md)."""
    low = run(kit, RT4_NOT_RESECTABLE, {"li2018_prognostic_index": kit.li_result(251)})
    high = run(kit, RT4_NOT_RESECTABLE, {"li2018_prognostic_index": kit.li_result(252)})
    assert {o.modality: o.status for o in low.options} == {
        o.modality: o.status for o in high.options}
    assert option(low, "reimrt").rank < option(high, "reimrt").rank  # reordered, same status
    assert "15–31%" in warnings_of(high, "reimrt")  # the band's outcome, read from the result


# --- new vignettes, one per item ---------------------------------------------------------------


@dataclass(frozen=True)
class Vignette:
    name: str
    rule: str  # the rule id that produces the expectation (its source is on the rule)
    record: dict[str, Any]
    options: dict[str, str]
    status: str = "complete"
    scores: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Recommendation], None] | None = None


def _haemorrhage_everywhere(rec: Recommendation) -> None:
    for modality in REIRRADIATION:
        assert "Risk of fatal haemorrhage" in warnings_of(rec, modality), modality


def _ica_not_assessed(rec: Recommendation) -> None:
    for modality in (*REIRRADIATION, "enp", "tors", "msnp"):
        assert "Not assessed: ICA encasement/exposure" in warnings_of(rec, modality), modality


def _policy_named(rec: Recommendation) -> None:
    assert any("institutional policy window" in item for item in rec.required_workup)
    policy = rec.policies[0]
    assert (policy.name, policy.value, policy.kind) == ("restaging_window_days", 90,
                                                        "institutional_policy")


def _after_decision(rec: Recommendation) -> None:
    assert any("after the decision date" in item for item in rec.required_workup)


def _histology(rec: Recommendation) -> None:
    assert any("histological confirmation" in item for item in rec.required_workup)


def _ecog3(rec: Recommendation) -> None:
    assert "KPS 30 derived from ECOG 3" in warnings_of(rec, "reimrt")


def _ps_unknown(rec: Recommendation) -> None:
    assert "performance status (KPS or ECOG)" in rec.missing_assessments
    for modality in LOCAL_MODALITIES:
        assert "Not assessed: performance status" in warnings_of(rec, modality)


def _resectability_unknown(rec: Recommendation) -> None:
    for modality in ("enp", "tors", "msnp", "neck_dissection"):
        assert "Not assessed: surgeon's resectability" in warnings_of(rec, modality), modality


def _li_provisional_dependency(rec: Recommendation) -> None:
    deps = {(d.model, d.status, d.role) for d in option(rec, "reimrt").depends_on}
    assert ("li2018_prognostic_index", "provisional", "ordering") in deps


def _large_gtv(rec: Recommendation) -> None:
    for modality in REIRRADIATION:
        text = warnings_of(rec, modality)
        assert "> 38 cm³" in text and "30.1% vs 55.9%" in text, modality  # seed [20]
        assert "≥ 22 cm³" in text and "20.8% vs 63.1%" in text, modality  # Xiao 2015


def _gtv_25(rec: Recommendation) -> None:
    text = warnings_of(rec, "reimrt")
    assert "≥ 22 cm³" in text and "> 38 cm³" not in text


def _msnp_first(rec: Recommendation) -> None:
    assert option(rec, "msnp").rank < option(rec, "reimrt").rank


def _hyperfractionation(rec: Recommendation) -> None:
    text = reasons_of(rec, "reimrt")
    assert "34.8 vs 35.5 months" in text and "better OS" not in text


def _threshold_from_scores(rec: Recommendation) -> None:
    # 70 Gy prior + the suggested 65 Gy = 135 Gy ≥ the 130 Gy the (altered) result reports.
    assert "≥ 130 Gy" in warnings_of(rec, "reimrt")


def _proton_consider(rec: Recommendation) -> None:
    assert "At most 'consider'" in reasons_of(rec, "proton")


ALTERED_CUMULATIVE_THRESHOLD = {"cumulative_gtv_dose": {"thresholds": [Threshold(
    quantity="accumulated_gtv_dose", operator=">=", value=130.0, unit="Gy", met=None,
    source="test: a changed threshold must be followed")]}}
# Rules that speak through warnings only (warnings carry no rule id): traced by their text.
WARNING_ONLY_RULES = {"R6.not_assessed", "R6.tumour_volume", "R6.lethal_necrosis",
                      "R6.cumulative_gtv_dose"}

NEW_VIGNETTES = [
    Vignette("item 1: foramen lacerum, small rT2 — every re-irradiation modality warned",
             "R6.haemorrhage_hazard",
             {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial",
              "recurrence.extension.foramen_lacerum": True},
             {"srs": C, "sbrt": C, "brachytherapy": C, "reimrt": C, "proton": C,
              "carbon_ion": C}, check=_haemorrhage_everywhere),
    Vignette("item 1: ICA exposure on rT4 beyond reach", "R6.haemorrhage_hazard",
             {**RT4_NOT_RESECTABLE, "recurrence.extension.ica_encasement": True},
             {"reimrt": C, "proton": C, "carbon_ion": C, "sbrt": NR},
             check=_haemorrhage_everywhere),
    Vignette("item 1/5: ICA not assessed on rT1", "R6.haemorrhage_hazard",
             {"recurrence.extension.ica_encasement": None},
             {"enp": C, "reimrt": C, "srs": C, "brachytherapy": C}, check=_ica_not_assessed),
    Vignette("item 2: protons never above consider on rT1", "R4.particles_experimental", {},
             {"proton": C, "carbon_ion": C, "enp": R}, check=_proton_consider),
    Vignette("item 2: carbon after a short interval, availability not stated",
             "R4.particles_experimental",
             {**RT4_NOT_RESECTABLE, "diagnosed_on": "2023-09-01",
              "context.available_modalities": None},
             {"carbon_ion": C, "proton": C}),
    Vignette("item 3: imaging older than the policy window", "R1.workup_gate",
             {"restaging.mri_on": "2026-03-01", "restaging.pet_ct_on": "2026-11-12"},
             {"enp": C}, status="workup_incomplete", check=_policy_named),
    Vignette("item 3: PET/CT dated after the decision date", "R1.workup_gate",
             {"restaging.pet_ct_on": "2026-11-21"}, {"enp": C}, status="workup_incomplete",
             check=_after_decision),
    Vignette("item 3: histology not recorded", "R1.workup_gate",
             {"restaging.biopsy_confirmed": None}, {"enp": C}, status="workup_incomplete",
             check=_histology),
    Vignette("item 4: ECOG 3 (KPS 30 derived)", "R6.performance_status",
             {**RT4_NOT_RESECTABLE, "patient.kps": None, "patient.ecog": 3},
             {"reimrt": C, "carbon_ion": C}, check=_ecog3),
    Vignette("item 4/5: performance status not assessed", "R6.performance_status",
             {"patient.kps": None, "patient.ecog": None},
             {"enp": C, "reimrt": C, "brachytherapy": C}, check=_ps_unknown),
    Vignette("item 4: KPS 60, isolated neck recurrence", "R6.performance_status",
             {"patient.kps": 60, "recurrence.site": "regional", "recurrence.t_category": None,
              "recurrence.n_category": "N1", "recurrence.extension": None,
              "recurrence.neck": {"node_count": 1, "largest_node_cm": 2.0}},
             {"neck_dissection": C, "systemic_therapy": C}),
    Vignette("item 5: resectability not assessed, rT3 beyond reach", "R6.not_assessed",
             {"recurrence.t_category": "T3", "recurrence.extension.pterygoid_structures": True,
              "recurrence.resectable": None, "recurrence.gtv_volume_cm3": 15.0},
             {"msnp": C, "tors": C}, check=_resectability_unknown),
    Vignette("item 6: Li 2018 high risk only reorders", "R4.li2018_risk",
             RT4_NOT_RESECTABLE, {"reimrt": C},
             scores={"li2018_prognostic_index": "high"}, check=_li_provisional_dependency),
    Vignette("item 7: GTV 45 cm³ stated on re-irradiation options", "R6.tumour_volume",
             {**RT4_NOT_RESECTABLE, "recurrence.gtv_volume_cm3": 45.0}, {"reimrt": C},
             check=_large_gtv),
    Vignette("item 7: GTV 25 cm³: only the ≥ 22 cm³ threshold", "R6.tumour_volume",
             {**RT4_NOT_RESECTABLE, "recurrence.gtv_volume_cm3": 25.0}, {"reimrt": C},
             check=_gtv_25),
    Vignette("item 7: resectable rT4, maxillary swing before re-IMRT", "R4.beyond_enp_reach",
             {"recurrence.t_category": "T4", "recurrence.extension.beyond_lateral_pterygoid": True,
              "recurrence.gtv_volume_cm3": 20.0},
             {"msnp": C, "reimrt": C}, check=_msnp_first),
    Vignette("item 7: hyperfractionation reason without an OS claim",
             "R4.reirradiation_schedules", RT4_NOT_RESECTABLE, {"reimrt": C},
             check=_hyperfractionation),
    Vignette("item 9: the accumulated-dose threshold is read from the score result",
             "R6.cumulative_gtv_dose", {}, {"enp": R}, scores=ALTERED_CUMULATIVE_THRESHOLD,
             check=_threshold_from_scores),
]


@pytest.mark.parametrize("vignette", NEW_VIGNETTES, ids=[v.name for v in NEW_VIGNETTES])
def test_new_vignette(vignette: Vignette, kit: SimpleNamespace) -> None:
    scores = dict(vignette.scores)
    if scores.get("li2018_prognostic_index") == "high":
        scores["li2018_prognostic_index"] = kit.li_result(300)
    rec = run(kit, vignette.record, scores)
    assert rec.status == vignette.status
    actual = {o.modality.value: o.status.value for o in rec.options}
    assert {m: actual[m] for m in vignette.options} == vignette.options
    fired = {r.rule for o in rec.options for r in o.reasons}
    assert vignette.rule in fired or vignette.rule in WARNING_ONLY_RULES
    if vignette.check is not None:
        vignette.check(rec)


def test_restaging_window_is_a_policy_setting(kit: SimpleNamespace) -> None:
    """R1.workup_gate: the window is the institution's; a wider one accepts older imaging."""
    overrides = {"restaging.mri_on": "2026-03-01"}
    assert run(kit, overrides).status == "workup_incomplete"
    assert run(kit, overrides, policy=Policy(restaging_window_days=365)).status == "complete"


# --- item 6: dependencies; item 8: the basis ---------------------------------------------------


def test_each_option_lists_the_provisional_models_it_relies_on(kit: SimpleNamespace) -> None:
    """R4.li2018_risk, R3.small_volume_techniques, R6.lethal_necrosis (all provisional)."""
    rec = run(kit, {"patient.sex": "female"})
    deps = {o.modality.value: {(d.model, d.status.value, d.role.value) for d in o.depends_on}
            for o in rec.options}
    assert ("srs_suitability", "provisional", "warning") in deps["srs"]
    assert ("lethal_necrosis_factors", "provisional", "warning") in deps["reimrt"]
    assert ("li2018_prognostic_index", "provisional", "warning") in deps["reimrt"]
    assert ("ajcc8_stage", "exact", "status") in deps["enp"]
    for o in rec.options:
        assert not any(d.status == "provisional" and d.role == "status" for d in o.depends_on)


def test_the_recommendation_carries_its_basis(kit: SimpleNamespace) -> None:
    """Item 8: scores with status, cited studies with n and figures, case notes, provisional
    flags — on the HTTP body and in the Kafka event payload alike."""
    record = kit.build_record(RT4_NOT_RESECTABLE)
    evidence = kit.build_evidence()
    evidence.by_modality["reimrt"].case_notes.append("Case GTV 20 cm³ (≤ 38 cm³); seed §3 [20].")
    rec = recommend(record, kit.build_scores(record), evidence, ISSUED_AT)
    basis = rec.basis
    scores = {s.model: s for s in basis.scores}
    assert scores["li2018_prognostic_index"].status == "provisional"
    assert scores["cumulative_gtv_dose"].thresholds[0].value == 145.5
    assert scores["ward2018_rpa"].status == "exact"
    cited = {s.study_id: s for s in basis.studies}
    assert "t2-tian-2017" in cited and cited["t2-tian-2017"].n == 245
    assert cited["t2-tian-2017"].outcomes[0].percent.low == 27  # as the paper reported it
    assert "t1-chen-2009" not in cited  # ENP is not offered here: its studies are not carried
    assert [(n.modality, n.text[:8]) for n in basis.evidence_notes] == [("reimrt", "Case GTV")]
    flags = {f.model: f for f in basis.provisional_flags}
    assert "reimrt" in flags["li2018_prognostic_index"].options
    payload = RecommendationIssued(
        recurrence_id=record.recurrence_id, version=record.version, content_hash=record.content_hash(),
        scores_hash="0" * 64, evidence_hash="0" * 64,
        recommendation=rec, record_summary=RecordSummary(
        recurrence_id=record.recurrence_id, patient_ref=record.patient_ref,
        version=record.version, site=record.recurrence.site, t_category="T4",
        n_category="N0", m_category="M0")).model_dump(mode="json")
    again = RecommendationIssued.model_validate(json.loads(json.dumps(payload)))
    assert again.recommendation.basis == basis
    print(f"recommendation event payload: {len(json.dumps(payload))} bytes")


def test_option_text_never_contradicts_its_status(kit: SimpleNamespace) -> None:
    """Item 7: no reason calls an option recommended unless its status is recommended."""
    import re

    claim = re.compile(r"(?<!not )(?<!never )\brecommended\b(?! outright)")
    cases = [{}, RT4_NOT_RESECTABLE, CARBON_CASE, {"restaging.pet_ct_on": None},
             {"recurrence.extension.oropharynx": True}, {"patient.kps": 50}]
    for overrides in cases:
        rec = run(kit, overrides)
        for o in rec.options:
            if o.status == OptionStatus.recommended:
                continue
            for reason in o.reasons:
                text = reason.text.replace("clinical status: recommended", "")
                assert not claim.search(text), (o.modality, o.status, reason.text)
