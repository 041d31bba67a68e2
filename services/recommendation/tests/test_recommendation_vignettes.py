"""Clinical vignettes: each expectation names the rule that produces it and that rule's source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from rnpc_shared.contracts.recommendation import Option, Recommendation

from rnpc_recommendation.domain import recommend

ISSUED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
R, C, NR, U = "recommended", "consider", "not_recommended", "unavailable"

NO_PARTICLES_OR_BRACHY = ["enp", "tors", "msnp", "reimrt", "srs", "sbrt"]
PLANNED_70_GY_35_FX = {"total_dose_gy": 70.0, "fractions": 35, "fractions_per_day": 1}


@dataclass(frozen=True)
class Vignette:
    name: str
    record: dict[str, Any]
    status: str  # recommendation status
    first: str  # rank-1 modality
    options: dict[str, str]  # modality -> expected status
    scores: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Recommendation], None] | None = None


def option(rec: Recommendation, modality: str) -> Option:
    return next(o for o in rec.options if o.modality == modality)


def text_of(rec: Recommendation, modality: str) -> str:
    o = option(rec, modality)
    return " ".join([*(r.text for r in o.reasons), *o.warnings])


def rank(rec: Recommendation, modality: str) -> int:
    return option(rec, modality).rank


def _rt3_confined(rec: Recommendation) -> None:
    # R3.enp_within_reach: Liu 2021 admits the sphenoid base wall only -> confirm on MRI.
    assert "base wall of the sphenoid sinus" in text_of(rec, "enp")


def _single_node(rec: Recommendation) -> None:
    # R2.isolated_regional: selective ND for a single node; level-I-sparing (seed §4.4 [64,70,71]).
    text = text_of(rec, "neck_dissection")
    assert "selective neck dissection may suffice" in text
    assert "4–5%" in text and "level-I-sparing" in text
    assert "41%" in text  # 5-year OS, seed [63]


def _multiple_nodes(rec: Recommendation) -> None:
    # R2.isolated_regional: (modified) radical ND when more than one node (seed §4.4).
    assert "radical or modified radical" in text_of(rec, "neck_dissection")


def _m1(rec: Recommendation) -> None:
    # R1.m1_systemic: PD-1 inhibitor + gemcitabine/cisplatin and the tumour board (MODELS.md §5.1).
    assert "PD-1 inhibitor + gemcitabine/cisplatin" in text_of(rec, "systemic_therapy")
    assert any("tumour board" in w for w in rec.warnings)
    assert all(o.schedule is None for o in rec.options)  # no dose suggested for an excluded option


def _missing_pet(rec: Recommendation) -> None:
    # R1.workup_gate: the missing item is listed and the ranking is still shown (MODELS.md §5.1).
    assert rec.required_workup == ["whole-body PET/CT to exclude distant metastases"]
    assert [o.rank for o in rec.options] == list(range(1, 13))


def _ward_iii(rec: Recommendation) -> None:
    # R5.ward_class_iii: SBRT over re-IMRT, or palliation (MODELS.md §5.5; seed §5.4 [19]).
    assert rank(rec, "sbrt") < rank(rec, "best_supportive_care") < rank(rec, "reimrt")
    assert "7.9 months" in text_of(rec, "reimrt")


def _haemorrhage(rec: Recommendation) -> None:
    # R6.haemorrhage_hazard: fatal haemorrhage warning on SBRT/SRS and re-IMRT (seed §5.4 [98]).
    for modality in ("srs", "sbrt", "reimrt"):
        assert any("fatal haemorrhage" in w for w in option(rec, modality).warnings)


def _ica_rt4(rec: Recommendation) -> None:
    _haemorrhage(rec)
    # R4.beyond_enp_reach: ICA encasement needs EC-IC bypass expertise for MSNP (seed §4.3 [61]).
    assert any("bypass" in w for w in option(rec, "msnp").warnings)


def _necrosis(rec: Recommendation) -> None:
    # R6.lethal_necrosis + R6.cumulative_gtv_dose: factors named, 145.5 Gy flagged (seed [88]).
    warnings = " ".join(option(rec, "reimrt").warnings)
    assert "female_sex" in warnings and "necrosis_before_reirradiation" in warnings
    assert "146 Gy" in warnings and "145.5 Gy" in warnings
    assert any("145.5" in w for w in rec.warnings)


def _constrained(rec: Recommendation) -> None:
    # R7.constrained_resources (MODELS.md §5.7): pre-operative protocol, HEPA suction, ≥ 20 fx,
    # short techniques ranked ahead of re-IMRT.
    enp_warnings = " ".join(option(rec, "enp").warnings)
    assert "14 days" in enp_warnings and "24 h apart" in enp_warnings and "12 weeks" in enp_warnings
    assert "HEPA" in enp_warnings
    assert any("20 fractions" in w for w in option(rec, "reimrt").warnings)
    assert max(rank(rec, m) for m in ("srs", "sbrt", "brachytherapy")) < rank(rec, "reimrt")


def _no_brachy(rec: Recommendation) -> None:
    # R8.availability: the referral note sits beside the clinical reasons; an excluded option
    # stays excluded.
    assert "refer" in text_of(rec, "brachytherapy")
    assert any(r.rule == "R3.small_volume_techniques" for r in option(rec, "brachytherapy").reasons)
    assert any(r.rule == "R8.availability" for r in option(rec, "neck_dissection").reasons)


def _li_high(rec: Recommendation) -> None:
    # R4.li2018_risk: provisional high risk warns and lowers re-IMRT; trial/systemic first.
    assert "15–31%" in " ".join(option(rec, "reimrt").warnings)
    assert rank(rec, "reimrt") > rank(rec, "best_supportive_care")


def _ecog_only(rec: Recommendation) -> None:
    # R3.enp_within_reach / R0.record_notes: the KPS was derived (MODELS.md §1).
    assert "KPS 70 derived from ECOG 1" in text_of(rec, "enp")
    assert any("derived from ECOG 1" in w for w in rec.warnings)


def _ecog_two(rec: Recommendation) -> None:
    assert "KPS 50 derived from ECOG 2" in text_of(rec, "enp")


def _keratinizing(rec: Recommendation) -> None:
    # R3.enp_within_reach: Liu 2021 admitted non-keratinizing histology only.
    assert "keratinizing histology" in text_of(rec, "enp")


def _not_stated(rec: Recommendation) -> None:
    # R8.availability: availability not stated -> top-level warning, nothing unavailable.
    assert any("not stated" in w for w in rec.warnings)


def _rt3_unknown_sphenoid(rec: Recommendation) -> None:
    # R3.enp_within_reach: unknown criteria are named, not assumed (MODELS.md §5.3).
    assert "sphenoid base wall as the only bony/sinus site" in text_of(rec, "enp")


T3_CONFINED = {
    "recurrence.t_category": "T3",
    "recurrence.extension.sphenoid_sinus": True,
    "recurrence.extension.parapharyngeal": "superficial",
    "recurrence.gtv_volume_cm3": 12.0,
}
RT4_INTRACRANIAL = {
    "recurrence.t_category": "T4",
    "recurrence.extension.intracranial": True,
    "recurrence.extension.skull_base_bone": True,
    "recurrence.resectable": False,
    "recurrence.gtv_volume_cm3": 30.0,
}

VIGNETTES: list[Vignette] = [
    Vignette(
        "early local rT1",
        {},
        "complete",
        "enp",
        {
            "enp": R,  # R3.enp_within_reach — all Liu 2021 criteria met (MODELS.md §5.3)
            "reimrt": C,  # R3.enp_within_reach — hyperfractionated re-IMRT as alternative (§5.3)
            "brachytherapy": C,  # R3.small_volume_techniques — small T1–T2 (seed §5.7)
            "srs": C,  # R3.small_volume_techniques — small rT1–2 volume (MODELS.md §4.6)
            "neck_dissection": NR,  # R3.enp_within_reach — no regional disease (§5.2)
            "best_supportive_care": NR,  # R3.enp_within_reach — a curative option fits (§5)
        },
    ),
    Vignette(
        "rT2 at the roof, superficial parapharyngeal",
        {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial"},
        "complete",
        "enp",
        {
            "enp": R,  # R3.enp_within_reach — rT2, superficial parapharyngeal (Liu 2021)
            "sbrt": C,  # R3.small_volume_techniques — small rT1–2 (MODELS.md §4.6)
            "systemic_therapy": NR,  # R3.enp_within_reach — a curative option fits (§5)
        },
    ),
    Vignette(
        "rT3 confined per Liu 2021 (sphenoid base wall)",
        T3_CONFINED,
        "complete",
        "enp",
        {
            "enp": R,  # R3.enp_within_reach — rT3 confined to the sphenoid base wall (Liu 2021)
            "srs": NR,  # R3.small_volume_techniques — rT3: SRS/SBRT for rT1–2 only (§4.6; seed §6)
            "sbrt": NR,  # idem
            "brachytherapy": NR,  # R3.small_volume_techniques — small T1–T2 only (seed §5.7)
            "reimrt": C,  # R3.enp_within_reach — alternative (§5.3)
        },
        check=_rt3_confined,
    ),
    Vignette(
        "rT1 extending to the oropharynx (outside Liu 2021's regions)",
        {"recurrence.extension.oropharynx": True},
        "complete",
        "enp",
        {
            "enp": C,  # R3.enp_within_reach — outside Liu 2021's regions: surgeon's judgement
            "reimrt": C,  # R3.enp_within_reach — rT1 stays on the ENP pathway (seed §6)
            "best_supportive_care": NR,  # R3.enp_within_reach — resectable rT1 fits (seed §6)
        },
    ),
    Vignette(
        "rT3 with the sphenoid involvement not recorded",
        {**T3_CONFINED, "recurrence.extension.sphenoid_sinus": None},
        "complete",
        "enp",
        {"enp": C},  # R3.enp_within_reach — unknown criteria -> consider, named (§5.3)
        check=_rt3_unknown_sphenoid,
    ),
    Vignette(
        "rT4 intracranial, not resectable, Li low",
        RT4_INTRACRANIAL,
        "complete",
        "reimrt",
        {
            "reimrt": C,  # R4.beyond_enp_reach: Li 2018 is provisional, never lifts the status
            "enp": NR,  # R4.beyond_enp_reach — intracranial, rT4 (Liu 2021 reach)
            "msnp": NR,  # R4.beyond_enp_reach — surgeon: not resectable
            "srs": NR,  # R3.small_volume_techniques — rT4 (§4.6)
            "brachytherapy": NR,  # R3.small_volume_techniques — rT4 (seed §5.7)
            "carbon_ion": C,  # R4.particles_experimental — experimental, at most consider (seed §5.6)
            "best_supportive_care": C,  # R4.beyond_enp_reach — no exact curative fit (§5)
        },
    ),
    Vignette(
        "isolated neck recurrence, single node",
        {
            "recurrence.site": "regional",
            "recurrence.t_category": None,
            "recurrence.n_category": "N1",
            "recurrence.extension": None,
            "recurrence.neck": {"node_count": 1, "largest_node_cm": 2.0, "level_i": False},
        },
        "complete",
        "neck_dissection",
        {
            "neck_dissection": R,  # R2.isolated_regional — treatment of choice (seed [63])
            "reimrt": C,  # R2.isolated_regional — the alternative when ND is not possible
            "enp": NR,  # R2.isolated_regional — no nasopharyngeal recurrence
            "srs": NR,  # idem
            "systemic_therapy": NR,  # R2.isolated_regional — resectable neck: curative fit (§5)
        },
        check=_single_node,
    ),
    Vignette(
        "isolated neck recurrence, multiple nodes",
        {
            "recurrence.site": "regional",
            "recurrence.t_category": None,
            "recurrence.n_category": "N2",
            "recurrence.extension": None,
            "recurrence.neck": {"node_count": 3, "largest_node_cm": 3.0, "bilateral": True},
        },
        "complete",
        "neck_dissection",
        {"neck_dissection": R, "brachytherapy": NR},  # R2.isolated_regional (seed §4.4)
        check=_multiple_nodes,
    ),
    Vignette(
        "M1 at restaging",
        {"recurrence.m_category": "M1"},
        "not_local_candidate",
        "systemic_therapy",
        {
            "systemic_therapy": R,  # R1.m1_systemic — PD-1 + GP, tumour board (MODELS.md §5.1)
            "best_supportive_care": C,  # R1.m1_systemic
            "enp": NR,  # R1.m1_systemic — no local curative option
            "reimrt": NR,  # idem
            "neck_dissection": NR,  # idem
        },
        check=_m1,
    ),
    Vignette(
        "PET/CT missing",
        {"restaging.pet_ct_on": None},
        "workup_incomplete",
        "enp",
        {
            "enp": C,  # R1.workup_gate — no local curative recommendation before restaging (§5.1)
            "reimrt": C,  # R1.workup_gate
            "neck_dissection": NR,  # R3.enp_within_reach — the most cautious proposal wins
        },
        check=_missing_pet,
    ),
    Vignette(
        "Ward class III, rT3 beyond ENP reach",
        {
            "diagnosed_on": "2023-06-20",  # 15 months after RT
            "patient.organ_dysfunction": True,
            "recurrence.t_category": "T3",
            "recurrence.extension.pterygoid_structures": True,
            "recurrence.extension.skull_base_bone": True,
            "recurrence.resectable": None,
            "recurrence.gtv_volume_cm3": 15.0,
        },
        "complete",
        "sbrt",
        {
            "sbrt": C,  # R3.small_volume_techniques keeps it for class III + R5 (seed §5.4 [19])
            "srs": NR,  # R3.small_volume_techniques — rT3 (§4.6)
            "reimrt": C,  # R5.ward_class_iii — not the preferred course (MODELS.md §5.5)
            "carbon_ion": C,  # R4.particles_experimental — at most consider (seed §5.6)
            "best_supportive_care": C,  # R5.ward_class_iii — palliation discussed
            "enp": C,  # R4.beyond_enp_reach — outside Liu 2021 confinement (pterygoid), judgement
            "msnp": C,  # R4.beyond_enp_reach — resectability to confirm (seed §4.3)
        },
        check=_ward_iii,
    ),
    Vignette(
        "fossa of Rosenmüller invading the foramen lacerum",
        {
            "recurrence.t_category": "T3",
            "recurrence.extension.fossa_of_rosenmuller": True,
            "recurrence.extension.foramen_lacerum": True,
            "recurrence.extension.skull_base_bone": True,
            "recurrence.resectable": False,
            "recurrence.gtv_volume_cm3": 14.0,
        },
        "complete",
        "reimrt",
        {
            "reimrt": C,  # R6.haemorrhage_hazard caps re-IMRT at consider (seed §5.4 [98])
            "enp": NR,  # R4.beyond_enp_reach — surgeon: not resectable
            "sbrt": NR,  # R3.small_volume_techniques — rT3 (§4.6)
        },
        check=_haemorrhage,
    ),
    Vignette(
        "ICA encasement, resectable rT4",
        {
            "recurrence.t_category": "T4",
            "recurrence.extension.ica_encasement": True,
            "recurrence.extension.beyond_lateral_pterygoid": True,
            "recurrence.resectable": True,
            "recurrence.gtv_volume_cm3": 20.0,
        },
        "complete",
        "msnp",
        {
            "msnp": C,  # R4.beyond_enp_reach — selected resectable rT3–4 (seed §4.3 [58–62])
            "enp": NR,  # R4.beyond_enp_reach — ICA encasement, rT4
            "tors": NR,  # R4.beyond_enp_reach — no tactile feedback near the ICA (seed §4.2)
            "reimrt": C,  # R6.haemorrhage_hazard — ICA exposure (MODELS.md §5.6)
        },
        check=_ica_rt4,
    ),
    Vignette(
        "female, prior necrosis, high planned dose",
        {
            "patient.sex": "female",
            "patient.age_years": 48,
            "prior_treatment.mucosal_necrosis": True,
            "prior_treatment.rt_total_dose_gy": 76.0,
            "prior_treatment.rt_fractions": 38,
            "planned_reirradiation": PLANNED_70_GY_35_FX,
            "recurrence.t_category": "T3",
            "recurrence.extension.pterygoid_structures": True,
            "recurrence.resectable": False,
            "recurrence.gtv_volume_cm3": 20.0,
        },
        "complete",
        "reimrt",
        {
            "reimrt": C,  # R4.beyond_enp_reach (Li provisional); necrosis factors only warn (§5.6)
            "msnp": NR,  # R4.beyond_enp_reach — not resectable
        },
        check=_necrosis,
    ),
    Vignette(
        "constrained resources, rT2",
        {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial",
         "context.resource_mode": "constrained"},
        "complete",
        "enp",
        {"enp": R, "reimrt": C, "brachytherapy": C},  # R7.constrained_resources (MODELS.md §5.7)
        check=_constrained,
    ),
    Vignette(
        "centre without brachytherapy, particles or neck dissection",
        {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial",
         "context.available_modalities": NO_PARTICLES_OR_BRACHY},
        "complete",
        "enp",
        {
            "brachytherapy": U,  # R8.availability — would be considered: refer (MODELS.md §5.8)
            "proton": U,  # R8.availability
            "carbon_ion": U,  # R8.availability
            "neck_dissection": NR,  # R8.availability never hides an exclusion (engine.final_status)
            "enp": R,  # R3.enp_within_reach
        },
        check=_no_brachy,
    ),
    Vignette(
        "Li 2018 high risk, rT4 not resectable",
        {
            **RT4_INTRACRANIAL,
            "patient.age_years": 66,
            "prior_treatment.grade3_toxicity": True,
            "planned_reirradiation": PLANNED_70_GY_35_FX,
            "recurrence.gtv_volume_cm3": 45.0,
        },
        "complete",
        "systemic_therapy",
        {
            "systemic_therapy": C,  # R4.li2018_risk — trial / systemic discussed first (§5.4)
            "reimrt": C,  # R4.li2018_risk — re-IMRT only with a warning (provisional)
            "best_supportive_care": C,  # R4.beyond_enp_reach
        },
        check=_li_high,
    ),
    Vignette(
        "short interval, carbon ions available, rT4",
        {**RT4_INTRACRANIAL, "diagnosed_on": "2023-09-01", "recurrence.gtv_volume_cm3": 20.0,
         "patient.age_years": 50},
        "complete",
        "carbon_ion",
        {
            "carbon_ion": C,  # R4.particles_experimental — at most consider; first of its group
            "reimrt": C,  # R4.beyond_enp_reach (Li provisional)
        },
    ),
    Vignette(
        "short interval, carbon ions not offered",
        {**RT4_INTRACRANIAL, "diagnosed_on": "2023-09-01", "recurrence.gtv_volume_cm3": 20.0,
         "patient.age_years": 50, "context.available_modalities": NO_PARTICLES_OR_BRACHY},
        "complete",
        "reimrt",
        {"carbon_ion": U, "reimrt": C},  # R8.availability: carbon "where available" (§5.4)
    ),
    Vignette(
        "ECOG 1 only",
        {"patient.kps": None, "patient.ecog": 1},
        "complete",
        "enp",
        {"enp": R},  # R3.enp_within_reach — KPS 70 from ECOG 1, lower bound (MODELS.md §1)
        check=_ecog_only,
    ),
    Vignette(
        "ECOG 2 only",
        {"patient.kps": None, "patient.ecog": 2},
        "complete",
        "enp",
        {
            "enp": C,  # R3.enp_within_reach — KPS 50 < 70 (Liu 2021)
            "best_supportive_care": C,  # no exact curative fit with KPS < 70 (§5)
        },
        check=_ecog_two,
    ),
    Vignette(
        "keratinizing histology",
        {"histology": "who_type_1", "recurrence.keratinizing": True},
        "complete",
        "enp",
        {
            "enp": C,  # R3.enp_within_reach — Liu 2021: non-keratinizing only
            "systemic_therapy": NR,  # R3.enp_within_reach — resectable rT1 still fits (seed §6)
        },
        check=_keratinizing,
    ),
    Vignette(
        "availability not stated",
        {"context.available_modalities": None},
        "complete",
        "enp",
        {"enp": R, "carbon_ion": C, "brachytherapy": C},  # R8.availability (MODELS.md §5.8)
        check=_not_stated,
    ),
]


@pytest.mark.parametrize("vignette", VIGNETTES, ids=[v.name for v in VIGNETTES])
def test_vignette(vignette: Vignette, kit: SimpleNamespace) -> None:
    record = kit.build_record(vignette.record)
    scores = kit.build_scores(record, vignette.scores)
    rec = recommend(record, scores, kit.build_evidence(), ISSUED_AT)

    assert rec.status == vignette.status
    ranking = [(o.modality.value, o.status.value) for o in rec.options]
    assert rec.options[0].modality == vignette.first, ranking
    actual = {o.modality.value: o.status.value for o in rec.options}
    assert {m: actual[m] for m in vignette.options} == vignette.options
    if vignette.check is not None:
        vignette.check(rec)


def test_unavailable_keeps_clinical_reasons_and_warnings(kit: SimpleNamespace) -> None:
    """R8.availability: a referral never drops what the clinical rules said."""
    record = kit.build_record({"context.available_modalities": ["enp", "reimrt"]})
    rec = recommend(record, kit.build_scores(record), kit.build_evidence(), ISSUED_AT)
    brachy = option(rec, "brachytherapy")
    assert brachy.status == U
    assert [r.rule for r in brachy.reasons][-1] == "R8.availability"
    assert any("specialised centres" in w for w in brachy.warnings)
    assert brachy.schedule is not None and brachy.schedule.total_dose_gy == 24.0  # seed [113]


def test_referral_for_the_best_option_stays_first(kit: SimpleNamespace) -> None:
    """Ranking: status group first, then what the centre offers, then the rules' priority."""
    record = kit.build_record({"context.available_modalities": ["reimrt", "srs"]})
    rec = recommend(record, kit.build_scores(record), kit.build_evidence(), ISSUED_AT)
    assert (rec.options[0].modality, rec.options[0].status) == ("enp", U)  # recommended, refer
    consider_group = [o for o in rec.options if o.modality not in ("enp",) and o.status in (C, U)]
    offered_first = [o.status for o in consider_group]
    assert offered_first == sorted(offered_first, key=lambda status: status == U)
    assert rank(rec, "reimrt") < rank(rec, "brachytherapy")


@pytest.mark.parametrize("volume_cm3", [8.0, 30.0])
def test_brachytherapy_is_ordered_and_warned_by_the_small_volume_limit_as_srs_and_sbrt_are(kit: SimpleNamespace, volume_cm3: float) -> None:
    """Brachytherapy is for small rT1–2 (seed §5.7, §6) with no volume of its own: the SRS/SBRT
    limit (MODELS.md §4.6) orders and warns it, as it does SRS/SBRT, and its reason never calls a
    30 cm³ lesion small. Its status stays 'consider' (the suitability model is provisional)."""
    small = {"recurrence.t_category": "T2", "recurrence.extension.parapharyngeal": "superficial"}
    record = kit.build_record({**small, "recurrence.gtv_volume_cm3": volume_cm3})
    rec = recommend(record, kit.build_scores(record), kit.build_evidence(), ISSUED_AT)
    brachy, srs = option(rec, "brachytherapy"), option(rec, "srs")
    assert brachy.status == srs.status == C
    assert not any(r.text.startswith("Small rT1–2") for r in brachy.reasons)
    warned = [w for w in brachy.warnings if w.startswith("Not a small-volume candidate")]
    if volume_cm3 > 10:
        assert warned and f"{volume_cm3:g} cm³" in warned[0]
        assert rank(rec, "brachytherapy") > rank(rec, "reimrt")  # moved down, as SRS/SBRT are
    else:
        assert not warned and any("Small-volume rT1–2 candidate" in r.text for r in brachy.reasons)
