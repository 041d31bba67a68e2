"""Properties over any valid recurrence record built from the contract's example."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rnpc_shared.contracts.record import Extension, RecurrenceRecord
from rnpc_shared.contracts.scores import MODEL_IDS, ScoringParameters

from rnpc_scoring.domain import compute_scores
from rnpc_scoring.domain.staging import stage_group

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = json.loads((PROJECT_ROOT / "examples" / "recurrence_record.example.json").read_text())

bools = st.none() | st.booleans()
EXTENSION_FLAGS = [name for name in Extension.model_fields if name != "parapharyngeal"]


@st.composite
def courses(draw, max_total_gy: float, max_fractions: int = 100) -> tuple[float, int]:
    """Total dose and fractions with 0.5–25 Gy per fraction (the contract's rule)."""
    fractions = draw(st.integers(1, max_fractions))
    low, high = 0.5 * fractions, min(25.0 * fractions, max_total_gy)
    assume(low <= high)
    return round(draw(st.floats(low, high)), 2), fractions


@st.composite
def records(draw) -> RecurrenceRecord:
    data: dict[str, Any] = copy.deepcopy(EXAMPLE)
    rt_end = draw(st.dates(date(1990, 1, 1), date(2030, 12, 31)))
    data["prior_treatment"] = {
        **data["prior_treatment"],
        "rt_end_on": rt_end.isoformat(),
        "grade3_toxicity": draw(bools),
        "mucosal_necrosis": draw(bools),
        "resected_before_reirradiation": draw(bools),
    }
    data["prior_treatment"]["rt_total_dose_gy"], data["prior_treatment"]["rt_fractions"] = draw(
        courses(150.0))
    gap_days = draw(st.integers(1, 9000))
    data["diagnosed_on"] = None
    data["recorded_at"] = None
    when = draw(st.sampled_from(["diagnosed_on", "recorded_at", "neither"]))
    if when == "diagnosed_on":
        data["diagnosed_on"] = (rt_end + timedelta(days=gap_days)).isoformat()
    elif when == "recorded_at":
        moment = datetime.combine(rt_end + timedelta(days=gap_days), datetime.min.time(),
                                  tzinfo=timezone.utc) + timedelta(hours=draw(st.integers(0, 23)))
        data["recorded_at"] = moment.isoformat()

    kps = draw(st.none() | st.integers(0, 10).map(lambda k: k * 10))
    data["patient"] = {"age_years": draw(st.integers(0, 120)),
                       "sex": draw(st.sampled_from(["male", "female"])), "kps": kps,
                       "ecog": draw(st.none() | st.integers(0, 4)),
                       "organ_dysfunction": draw(bools)}
    data["histology"] = draw(st.none() | st.sampled_from(["who_type_1", "who_type_2",
                                                          "who_type_3"]))
    site = draw(st.sampled_from(["local", "regional", "locoregional"]))
    t_options = st.sampled_from(["T0", "T1", "T2", "T3", "T4"])
    extension = draw(st.none() | st.fixed_dictionaries(
        {name: bools for name in EXTENSION_FLAGS}
        | {"parapharyngeal": st.none() | st.sampled_from(["none", "superficial", "deep"])}))
    neck = draw(st.none() | st.fixed_dictionaries({
        "node_count": st.none() | st.integers(0, 20),
        "largest_node_cm": st.none() | st.floats(0.1, 30.0),
        "bilateral": bools, "below_cricoid": bools, "retropharyngeal_only": bools,
        "extranodal_extension": bools, "level_i": bools,
    }))
    data["recurrence"] = {
        "site": site,
        "t_category": draw(st.none() | t_options) if site == "regional" else draw(t_options),
        "n_category": draw(st.sampled_from(["N0", "N1", "N2", "N3"])),
        "m_category": draw(st.none() | st.sampled_from(["M0", "M1"])),
        "gtv_volume_cm3": draw(st.none() | st.floats(0.01, 1000.0)),
        "extension": extension,
        "neck": neck,
        "resectable": draw(bools),
        "surgical_stage": draw(st.none() | st.sampled_from(["I", "II", "III", "IV"])),
    }
    data["biomarkers"] = draw(st.none() | st.fixed_dictionaries({
        "ebv_dna_copies_per_ml": st.none() | st.floats(0, 1e7),
        "nlr": st.none() | st.floats(0.01, 100.0),
    }))
    if draw(st.booleans()):
        total, fractions = draw(courses(100.0))
        data["planned_reirradiation"] = {"total_dose_gy": total, "fractions": fractions,
                                         "fractions_per_day": draw(st.integers(1, 3))}
    else:
        data["planned_reirradiation"] = None
    try:
        return RecurrenceRecord.model_validate(data)
    except ValidationError:
        reject()  # float edge of the dose-per-fraction rule; rare


parameters = st.builds(
    ScoringParameters,
    alpha_beta_tumour_gy=st.floats(0.5, 30.0),
    alpha_beta_late_gy=st.floats(0.5, 30.0),
    alpha_beta_cns_gy=st.floats(0.5, 30.0),
    recovery_fraction=st.floats(0.0, 1.0),
    srs_max_volume_cm3=st.floats(0.5, 100.0),
)

SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@SETTINGS
@given(record=records(), params=parameters)
def test_compute_scores_never_raises_and_answers_every_model(record, params):
    scores = compute_scores(record, params)
    assert list(scores.results) == list(MODEL_IDS)
    for model_id, result in scores.results.items():
        assert result.model == model_id
        assert result.citation.strip()
        if result.computable:
            assert result.value is not None
        else:
            assert result.value is None
            assert result.missing_inputs or result.notes
        for outcome in result.reported_outcomes:
            assert outcome.source and outcome.low <= outcome.high
        if result.status == "provisional":
            assert result.version.endswith("provisional")
    json.dumps(scores.model_dump(mode="json"))  # plain data all the way down


@SETTINGS
@given(record=records())
def test_stage_is_consistent_with_entered_tnm(record):
    result = compute_scores(record).results["ajcc8_stage"]
    recurrence = record.recurrence
    if recurrence.m_category == "M1":
        assert result.value == "IVB"
    elif recurrence.n_category == "N3":
        assert result.value == "IVA"
    if recurrence.t_category is not None:  # the clinician's entry always stands
        assert result.details["t_category"] == recurrence.t_category.value
        m = recurrence.m_category.value if recurrence.m_category else "M0"
        assert result.value == stage_group(recurrence.t_category.value,
                                           recurrence.n_category.value, m)
    if recurrence.m_category is None:
        assert "recurrence.m_category" in result.missing_inputs


@SETTINGS
@given(record=records())
def test_interval_and_ward_agree(record):
    results = compute_scores(record).results
    interval, ward = results["interval_since_rt"], results["ward2018_rpa"]
    if not interval.computable:
        assert not ward.computable
        return
    if ward.computable:
        if interval.category == "long_interval":
            assert ward.value in ("I", "II")
        else:
            assert ward.value in ("II", "III")


@SETTINGS
@given(record=records(), params=parameters)
def test_necrosis_count_matches_present_factors(record, params):
    result = compute_scores(record, params).results["lethal_necrosis_factors"]
    factors = result.details["factors"]
    assert result.value == sum(value is True for value in factors.values())
    assert 0 <= result.value <= 4
    assert len(result.missing_inputs) == sum(value is None for value in factors.values())


@SETTINGS
@given(record=records(), params=parameters)
def test_shown_value_and_category_always_agree(record, params):
    results = compute_scores(record, params).results
    checks = [("eqd2_planned_course", 68.0, "at_or_above_threshold"),  # Li 2018 threshold
              ("cumulative_gtv_dose", 145.5, "at_or_above_threshold"),  # Yu 2016 threshold
              ("li2018_prognostic_index", 252, "high_risk")]  # Li 2018 cut-off
    for model_id, threshold, above in checks:
        result = results[model_id]
        if result.computable:
            assert (result.category == above) is (result.value >= threshold)
            assert result.thresholds[0].value == threshold
            assert result.thresholds[0].met is (result.value >= threshold)
    volume = results["tumour_volume"]
    if volume.computable:
        assert volume.details["gt_38_cm3"] is (volume.value > 38)
        assert volume.details["ge_22_cm3"] is (volume.value >= 22)
