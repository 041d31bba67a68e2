"""Prognostic models and dose results (MODELS.md §2, §4)."""

import pytest
from rnpc_shared.contracts.scores import MODEL_IDS, Scores, ScoringParameters

from rnpc_scoring.domain import compute_scores
from rnpc_scoring.domain.cards import CARDS, MODELS_VERSION, li2018, models_version
from rnpc_scoring.domain.calculators import (
    compute_cumulative_gtv_dose,
    compute_eqd2_planned_course,
    compute_eqd2_prior_course,
    compute_lethal_necrosis_factors,
    compute_li2018_prognostic_index,
    compute_markers,
    compute_srs_suitability,
    compute_surgical_stage,
    compute_tumour_volume,
)
from rnpc_scoring.domain.radiobiology import Course, bed_gy, cumulative_eqd2_gy, eqd2_gy

PARAMS = ScoringParameters()


# --- example record: every model answers ----------------------------------------------------

def test_example_record_scores_every_model(make_record):
    scores = compute_scores(make_record())
    assert isinstance(scores, Scores)
    assert list(scores.results) == list(MODEL_IDS)
    for model_id, result in scores.results.items():
        assert result.model == model_id
        assert result.version == CARDS[model_id].VERSION
        assert result.citation
    assert scores.models_version.startswith("scoring-models/")
    assert scores.parameters == PARAMS


def test_models_version_changes_with_any_card_version():
    versions = {model: card.VERSION for model, card in CARDS.items()}
    assert models_version(versions) == MODELS_VERSION
    for model in MODEL_IDS:
        assert models_version({**versions, model: versions[model] + ".1"}) != MODELS_VERSION


def test_results_do_not_share_card_objects(make_record):
    first = compute_scores(make_record()).results["ward2018_rpa"]
    first.reported_outcomes[0].low = -1.0
    again = compute_scores(make_record()).results["ward2018_rpa"]
    assert again.reported_outcomes[0].low != -1.0


# --- EQD2 results ---------------------------------------------------------------------------

def test_prior_course_eqd2_and_echoed_alpha_betas(make_record):
    record = make_record()  # 70 Gy / 33 fx
    result = compute_eqd2_prior_course(record, PARAMS)
    assert result.value == round(eqd2_gy(70.0, 33, 10.0), 1)
    assert result.unit == "Gy"
    assert result.details["bed_gy"] == round(bed_gy(70.0, 33, 10.0), 1)
    assert result.details["eqd2_late_gy"] == round(eqd2_gy(70.0, 33, 3.0), 1)
    assert result.details["eqd2_cns_gy"] == round(eqd2_gy(70.0, 33, 2.0), 1)
    assert result.details["dose_per_fraction_gy"] == round(70 / 33, 2)
    custom = ScoringParameters(alpha_beta_tumour_gy=8.0)
    other = compute_eqd2_prior_course(record, custom)
    assert other.value == round(eqd2_gy(70.0, 33, 8.0), 1)
    assert other.details["alpha_beta_tumour_gy"] == 8.0


@pytest.mark.parametrize(("dose_gy", "fractions", "category"), [
    (68.0, 34, "at_or_above_threshold"),  # 2 Gy fractions: EQD2 exactly 68 Gy, inclusive
    (67.8, 34, "below_threshold"),
    (65.0, 54, "below_threshold"),  # You 2023 hyperfractionation, EQD2 60.7
    (70.0, 35, "at_or_above_threshold"),
])
def test_planned_course_threshold(make_record, dose_gy, fractions, category):
    record = make_record({"planned_reirradiation": {"total_dose_gy": dose_gy,
                                                    "fractions": fractions}})
    result = compute_eqd2_planned_course(record, PARAMS)
    assert result.category == category
    assert (eqd2_gy(dose_gy, fractions, 10.0) >= 68.0) is (category == "at_or_above_threshold")
    threshold = result.threshold("planned_eqd2")
    assert (threshold.operator, threshold.value, threshold.unit) == (">=", 68.0, "Gy")
    assert threshold.met is (category == "at_or_above_threshold")


def test_planned_course_needs_a_plan(make_record):
    result = compute_eqd2_planned_course(make_record({"planned_reirradiation": None}), PARAMS)
    assert not result.computable and result.missing_inputs == ["planned_reirradiation"]


# --- cumulative GTV dose (Yu 2016 threshold 145.5 Gy) ---------------------------------------

@pytest.mark.parametrize(("planned_gy", "category"), [(75.5, "at_or_above_threshold"),
                                                      (75.4, "below_threshold")])
def test_cumulative_gtv_dose_threshold_is_inclusive(make_record, planned_gy, category):
    record = make_record({"planned_reirradiation": {"total_dose_gy": planned_gy, "fractions": 38}})
    result = compute_cumulative_gtv_dose(record, PARAMS)  # prior 70 Gy
    assert result.value == round(70.0 + planned_gy, 1)
    assert result.category == category
    threshold = result.threshold("accumulated_gtv_dose")
    assert (threshold.operator, threshold.value) == (">=", 145.5)  # Yu 2016, seed [88]


def test_cumulative_threshold_is_echoed_without_a_plan(make_record):
    result = compute_cumulative_gtv_dose(make_record({"planned_reirradiation": None}), PARAMS)
    assert not result.computable
    threshold = result.threshold("accumulated_gtv_dose")
    assert threshold.value == 145.5 and threshold.met is None


def test_cumulative_eqd2_uses_recovery_fraction(make_record):
    record = make_record()  # 70 Gy / 33 fx then 65 Gy / 54 fx
    params = ScoringParameters(recovery_fraction=0.25)
    result = compute_cumulative_gtv_dose(record, params)
    expected = cumulative_eqd2_gy(Course(70.0, 33), Course(65.0, 54), 0.25, alpha_beta_gy=10.0)
    assert result.details["eqd2_cumulative_gy"] == round(expected, 1)
    assert result.details["recovery_fraction"] == 0.25
    assert result.details["physical_total_gy"] == 135.0


# --- Li 2018 (provisional) ------------------------------------------------------------------

def test_li_points_are_those_of_models_md():
    # MODELS.md §4.1: 1 per mL, 2 per year, 35 for EQD2 ≥ 68 Gy, 64 for grade ≥ 3, 67 for rT3–4.
    assert (li2018.POINTS_PER_CM3_GTV, li2018.POINTS_PER_YEAR_AGE,
            li2018.POINTS_PLANNED_EQD2_GE_THRESHOLD, li2018.POINTS_PRIOR_GRADE3_TOXICITY,
            li2018.POINTS_RT3_4) == (1, 2, 35, 64, 67)


def li_record(make_record, gtv_cm3, **overrides):
    return make_record({"patient.age_years": 50, "recurrence.gtv_volume_cm3": gtv_cm3,
                        "prior_treatment.grade3_toxicity": True, "recurrence.t_category": "T3",
                        "recurrence.extension": None, **overrides})


@pytest.mark.parametrize(("gtv_cm3", "band"), [(20.0, "low_risk"), (21.0, "high_risk"),
                                               (22.0, "high_risk"), (20.9, "low_risk"),
                                               (20.96, "high_risk")])  # shown as 252.0
def test_li_index_at_and_around_the_cut_off(make_record, gtv_cm3, band):
    # 50 years → 100; grade ≥ 3 toxicity → 64; rT3 → 67; 65 Gy/54 fx (EQD2 60.7) → 0.
    expected = gtv_cm3 * 1 + 50 * 2 + 64 + 67
    result = compute_li2018_prognostic_index(li_record(make_record, gtv_cm3), PARAMS)
    assert result.status == "provisional" and result.computable
    assert result.value == round(expected, 1)
    # The band is read from the index as shown (0.1), so value and band never disagree.
    assert result.category == band == ("high_risk" if round(expected, 1) >= 252 else "low_risk")
    assert result.details["cut_off"] == 252
    assert result.details["distance_to_cut_off"] == pytest.approx(round(expected, 1) - 252)
    assert any("rovisional" in note for note in result.notes)


def test_li_planned_eqd2_ge_68_adds_its_points(make_record):
    plan = {"planned_reirradiation": {"total_dose_gy": 68.0, "fractions": 34}}
    result = compute_li2018_prognostic_index(li_record(make_record, 10.0, **plan), PARAMS)
    assert result.value == pytest.approx(10 + 100 + 35 + 64 + 67)
    assert result.details["points"]["planned_eqd2_ge_68_gy"] == 35


@pytest.mark.parametrize("path", ["recurrence.gtv_volume_cm3", "planned_reirradiation",
                                  "prior_treatment.grade3_toxicity"])
def test_li_missing_input_is_named_not_guessed(make_record, path):
    result = compute_li2018_prognostic_index(li_record(make_record, 20.0, **{path: None}), PARAMS)
    assert not result.computable and result.value is None
    assert result.missing_inputs == [path]


def test_li_without_t_category_for_a_regional_site(make_record):
    record = li_record(make_record, 20.0, **{"recurrence.site": "regional",
                                             "recurrence.t_category": None,
                                             "recurrence.n_category": "N1"})
    result = compute_li2018_prognostic_index(record, PARAMS)
    assert result.missing_inputs == ["recurrence.t_category"]
    assert any("isolated local recurrence" in note for note in result.notes)


# --- tumour volume --------------------------------------------------------------------------

@pytest.mark.parametrize(("gtv_cm3", "category", "gt_38", "ge_22"), [
    (38.01, "gtv_large", True, True),
    (38.0, "gtv_intermediate", False, True),  # "> 38" is strict
    (22.0, "gtv_intermediate", False, True),  # "≥ 22" is inclusive
    (21.99, "gtv_small", False, False),
])
def test_tumour_volume_thresholds(make_record, gtv_cm3, category, gt_38, ge_22):
    result = compute_tumour_volume(make_record({"recurrence.gtv_volume_cm3": gtv_cm3}), PARAMS)
    assert result.value == gtv_cm3 and result.category == category
    assert result.details == {"gt_38_cm3": gt_38, "ge_22_cm3": ge_22}
    assert [(t.operator, t.value, t.met) for t in result.thresholds] == [
        (">", 38.0, gt_38), (">=", 22.0, ge_22)]
    assert {o.group for o in result.reported_outcomes} == {
        f"{t.quantity}:{side}" for t in result.thresholds for side in ("met", "not_met")}


# --- lethal necrosis factors (Yu 2016, provisional) -----------------------------------------

@pytest.mark.parametrize(("planned_gy", "gtv_cm3", "dose_factor", "volume_factor"), [
    (75.5, 25.38, True, True),  # 70 + 75.5 = 145.5 Gy; both thresholds inclusive
    (75.4, 25.37, False, False),
])
def test_necrosis_thresholds(make_record, planned_gy, gtv_cm3, dose_factor, volume_factor):
    record = make_record({"planned_reirradiation": {"total_dose_gy": planned_gy, "fractions": 38},
                          "recurrence.gtv_volume_cm3": gtv_cm3, "patient.sex": "female",
                          "prior_treatment.mucosal_necrosis": True})
    result = compute_lethal_necrosis_factors(record, PARAMS)
    factors = result.details["factors"]
    assert factors["accumulated_gtv_dose_ge_145_5_gy"] is dose_factor
    assert factors["tumour_volume_ge_25_38_cm3"] is volume_factor
    assert factors["female_sex"] is True and factors["necrosis_before_reirradiation"] is True
    assert result.value == 2 + dose_factor + volume_factor == len(result.details["present"])
    assert result.missing_inputs == []


def test_necrosis_unknown_factors_give_a_lower_bound(make_record):
    record = make_record({"planned_reirradiation": None, "recurrence.gtv_volume_cm3": None,
                          "prior_treatment.mucosal_necrosis": None, "patient.sex": "female"})
    result = compute_lethal_necrosis_factors(record, PARAMS)
    assert result.computable and result.value == 1
    assert set(result.missing_inputs) == {"planned_reirradiation", "recurrence.gtv_volume_cm3",
                                          "prior_treatment.mucosal_necrosis"}
    assert any("lower bound" in note for note in result.notes)
    assert result.details["present"] == ["female_sex"]


def test_necrosis_none_present(make_record):
    result = compute_lethal_necrosis_factors(make_record(), PARAMS)
    assert result.value == 0 and result.category == "none_present"


# --- SRS suitability (Chua 2006, provisional) -----------------------------------------------

@pytest.mark.parametrize(("t", "gtv_cm3", "category"), [
    ("T2", 10.0, "candidate"),  # ≤ 10 cm³ inclusive
    ("T1", 3.0, "candidate"),
    ("T2", 10.1, "not_candidate"),
    ("T3", 5.0, "not_candidate"),
])
def test_srs_candidate_rule(make_record, t, gtv_cm3, category):
    record = make_record({"recurrence.t_category": t, "recurrence.gtv_volume_cm3": gtv_cm3,
                          "recurrence.extension": None})
    result = compute_srs_suitability(record, PARAMS)
    assert result.category == category and result.status == "provisional"
    assert result.details["interval_months"] == 56  # 2022-03-15 → 2026-11-18
    assert {o.group for o in result.reported_outcomes} == {"good", "intermediate", "poor"}


def test_srs_volume_limit_is_a_parameter(make_record):
    record = make_record({"recurrence.gtv_volume_cm3": 14.5})
    assert compute_srs_suitability(record, PARAMS).category == "not_candidate"
    wider = ScoringParameters(srs_max_volume_cm3=15.0)
    assert compute_srs_suitability(record, wider).category == "candidate"


def test_srs_needs_volume(make_record):
    result = compute_srs_suitability(make_record({"recurrence.gtv_volume_cm3": None}), PARAMS)
    assert not result.computable and result.missing_inputs == ["recurrence.gtv_volume_cm3"]


# --- surgical stage (You 2015, lookup only) -------------------------------------------------

def test_surgical_stage_lookup(make_record):
    result = compute_surgical_stage(make_record({"recurrence.surgical_stage": "III"}), PARAMS)
    assert result.status == "lookup_only" and result.value == "III"
    os_5y = {o.group: o.low for o in result.reported_outcomes}
    assert os_5y == {"stage_I": 72.0, "stage_II": 55.1, "stage_III": 21.1, "stage_IV": 10.1}
    assert any("IMRT" in note for note in result.notes)
    missing = compute_surgical_stage(make_record(), PARAMS)
    assert not missing.computable and missing.missing_inputs == ["recurrence.surgical_stage"]


# --- markers (reported, not scored) ---------------------------------------------------------

def test_markers_reported_not_scored(make_record):
    result = compute_markers(make_record({"biomarkers": {"ebv_dna_copies_per_ml": 0, "nlr": 2.29},
                                          "histology": "who_type_1"}), PARAMS)
    assert result.computable
    assert result.details["ebv_dna"]["detectable"] is False
    assert result.details["nlr"]["le_2_29"] is True  # the seed's "≤ 2.29" group
    assert result.details["who_type"]["type_iii"] is False
    assert any("checked against the source" in note for note in result.notes)
    assert any("never used in a rule" in note for note in result.notes)


def test_markers_absent(make_record):
    result = compute_markers(make_record({"biomarkers": None, "histology": None}), PARAMS)
    assert not result.computable
    assert set(result.missing_inputs) == {"histology", "biomarkers.ebv_dna_copies_per_ml",
                                          "biomarkers.nlr"}


def test_li_scores_the_rt_staged_from_the_flags_when_it_conflicts_upward(make_record):
    """Issue 9: entered rT2 but the flags show intracranial extension (rT4): Li 2018 scores rT4
    and says so; the clinician's entry still stands elsewhere (staging shows the conflict)."""
    record = li_record(make_record, 20.0, **{"recurrence.t_category": "T2",
                                             "recurrence.extension.intracranial": True})
    result = compute_li2018_prognostic_index(record, PARAMS)
    assert result.details["t_category"] == "T4"
    assert result.details["points"]["rt3_4"] == 67  # MODELS.md §4.1
    assert any("staged from the extension flags is used instead of the entered rT T2" in note
               for note in result.notes)


def test_li_never_lowers_an_entered_rt_to_the_flags(make_record):
    """Conservative reading: flags giving a less advanced rT do not lower the scored rT."""
    record = li_record(make_record, 20.0, **{"recurrence.t_category": "T4"})
    result = compute_li2018_prognostic_index(record, PARAMS)
    assert result.details["t_category"] == "T4"
