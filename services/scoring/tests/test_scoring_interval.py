"""Interval since prior RT in whole calendar months, and the Ward 2018 RPA (MODELS.md §2, §4.2)."""

from datetime import date

import pytest
from rnpc_shared.contracts.scores import ScoringParameters

from rnpc_scoring.domain.intervals import whole_calendar_months
from rnpc_scoring.domain.calculators import compute_interval_since_rt, compute_ward2018_rpa

PARAMS = ScoringParameters()


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        ("2022-03-15", "2024-03-14", 23),
        ("2022-03-15", "2024-03-15", 24),
        ("2022-03-15", "2024-04-15", 25),
        ("2022-03-15", "2022-03-16", 0),
        ("2022-12-31", "2023-01-01", 0),  # year change, one day
        ("2022-12-15", "2023-01-15", 1),
        # Month ends: a month completes on the same day of the month, or, when that day does
        # not exist, on the 1st of the next month (never counted early).
        ("2022-01-31", "2022-02-28", 0),
        ("2022-01-31", "2022-03-01", 1),
        ("2022-01-31", "2022-03-31", 2),
        ("2022-03-31", "2022-04-30", 0),
        ("2022-03-31", "2022-05-01", 1),
        ("2020-02-29", "2021-02-28", 11),  # leap day
        ("2020-02-29", "2021-03-01", 12),
        ("2022-02-28", "2022-03-28", 1),
        ("2022-02-28", "2022-03-31", 1),
    ],
)
def test_whole_calendar_months(start, end, months):
    assert whole_calendar_months(date.fromisoformat(start), date.fromisoformat(end)) == months


def test_months_never_decrease_as_the_end_date_moves_on():
    start = date(2021, 1, 31)
    counts = [whole_calendar_months(start, date.fromordinal(start.toordinal() + days))
              for days in range(0, 800)]
    assert counts == sorted(counts)
    assert all(b - a <= 1 for a, b in zip(counts, counts[1:], strict=False))


@pytest.mark.parametrize(("diagnosed_on", "months", "category"), [
    ("2024-03-14", 23, "short_interval"),  # the day before the 2nd anniversary: "< 2 years"
    ("2024-03-15", 24, "long_interval"),  # the 2nd anniversary itself is "≥ 2 years" (seed §3)
    ("2024-04-14", 24, "long_interval"),
    ("2024-04-15", 25, "long_interval"),
])
def test_interval_result(make_record, diagnosed_on, months, category):
    record = make_record({"prior_treatment.rt_end_on": "2022-03-15", "diagnosed_on": diagnosed_on})
    result = compute_interval_since_rt(record, PARAMS)
    assert result.computable and result.unit == "months"
    assert result.value == months and isinstance(result.value, int)
    assert result.category == category
    threshold = result.threshold("interval_since_rt")  # the cut-off travels with the result
    assert (threshold.operator, threshold.value, threshold.unit) == ("<", 2, "years")
    assert threshold.met is (category == "short_interval")


def test_interval_falls_back_to_recorded_at(make_record):
    record = make_record({"diagnosed_on": None, "recorded_at": "2024-03-15T23:30:00+02:00",
                          "prior_treatment.rt_end_on": "2022-03-15"})
    result = compute_interval_since_rt(record, PARAMS)
    assert result.value == 24
    assert result.details["recurrence_date_source"] == "recorded_at"
    assert result.notes


def test_interval_without_any_recurrence_date(make_record):
    record = make_record({"diagnosed_on": None, "recorded_at": None})
    result = compute_interval_since_rt(record, PARAMS)
    assert not result.computable and result.missing_inputs == ["diagnosed_on"]
    ward = compute_ward2018_rpa(record, PARAMS)
    assert not ward.computable and ward.missing_inputs == ["diagnosed_on"]


def ward(make_record, diagnosed_on, resected=None, organ_dysfunction=None):
    return compute_ward2018_rpa(make_record({
        "prior_treatment.rt_end_on": "2022-03-15",
        "diagnosed_on": diagnosed_on,
        "prior_treatment.resected_before_reirradiation": resected,
        "patient.organ_dysfunction": organ_dysfunction,
    }), PARAMS)


@pytest.mark.parametrize(("diagnosed_on", "resected", "organ_dysfunction", "rpa_class"), [
    # 25 months (> 2 years): resection decides, organ dysfunction is irrelevant.
    ("2024-04-15", True, True, "I"),
    ("2024-04-15", False, True, "II"),
    ("2024-04-15", True, False, "I"),
    # the day before the 2nd anniversary (< 2 years): organ dysfunction decides.
    ("2024-03-14", True, False, "II"),
    ("2024-03-14", True, True, "III"),
    ("2024-03-14", False, True, "III"),
    # the 2nd anniversary itself is "≥ 2 years" (seed §3 [19]): resection decides.
    ("2024-03-15", True, True, "I"),
    ("2024-03-15", False, True, "II"),
])
def test_ward_class_boundaries(make_record, diagnosed_on, resected, organ_dysfunction, rpa_class):
    result = ward(make_record, diagnosed_on, resected, organ_dysfunction)
    assert result.computable and result.status == "exact"
    assert result.value == rpa_class and result.category == f"class_{rpa_class}"


def test_ward_asks_only_for_the_factor_its_branch_needs(make_record):
    long_interval = ward(make_record, "2024-04-15", resected=None, organ_dysfunction=False)
    assert not long_interval.computable
    assert long_interval.missing_inputs == ["prior_treatment.resected_before_reirradiation"]
    short_interval = ward(make_record, "2024-03-14", resected=True, organ_dysfunction=None)
    assert short_interval.missing_inputs == ["patient.organ_dysfunction"]
    assert ward(make_record, "2024-03-14", resected=None, organ_dysfunction=False).computable


def test_ward_reported_outcomes_cover_each_class(make_record):
    result = ward(make_record, "2024-03-14", organ_dysfunction=True)
    by_group = {(o.group, o.label): o.low for o in result.reported_outcomes}
    assert by_group[("class_III", "2-year OS")] == 16.8  # MODELS.md §4.2
    assert by_group[("class_III", "median OS")] == 7.9
    assert {o.group for o in result.reported_outcomes} == {"class_I", "class_II", "class_III"}
    assert any("SBRT" in note for note in result.notes)


@pytest.mark.parametrize(("rt_end_on", "diagnosed_on", "short"), [
    ("2020-02-29", "2022-02-28", True),  # no 29 Feb in 2022: the anniversary is 1 March
    ("2020-02-29", "2022-03-01", False),
    ("2022-03-15", "2024-03-14", True),
    ("2022-03-15", "2024-03-15", False),
])
def test_ward_interval_is_less_than_two_years_on_dates(make_record, rt_end_on, diagnosed_on, short):
    """Ward's factor as the seed states it: "< 2 years" vs "≥ 2 years" (seed §3 [19])."""
    result = compute_ward2018_rpa(make_record({"prior_treatment.rt_end_on": rt_end_on,
                                          "diagnosed_on": diagnosed_on,
                                          "patient.organ_dysfunction": True,
                                          "prior_treatment.resected_before_reirradiation": True}),
                             PARAMS)
    assert result.value == ("III" if short else "I")
    assert result.details["short_interval"] is short
