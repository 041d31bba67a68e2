"""Card: Ward 2018 RPA classes for re-irradiation (MODELS.md §4.2, exact definitions)."""

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "ward2018_rpa"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
CITATION = (
    "Ward et al., MIRI collaborative, Int J Radiat Oncol Biol Phys 2018;100:586 (seed [19]); "
    "class outcomes: Ward et al., Oral Oncol 2019 (MODELS.md §4.2)"
)

# The seed states Ward's interval factor as "time from previous RT (<2 years vs. ≥2 years)"
# (seed §3 [19]); it is tested on calendar dates: short when the recurrence date is before the
# second anniversary of the RT end (issue 9). MODELS.md §2's month reading ("exactly 24 months is
# ≤ 2 years") is superseded for this test because the seed states the cut-off on years.
INTERVAL_YEARS = 2
INTERVAL_SOURCE = "Ward 2018, seed §3 [19]: time from previous RT < 2 years vs ≥ 2 years"

_OUTCOMES_SOURCE = "Ward et al., Oral Oncol 2019 (MODELS.md §4.2)"
# (class, 2-year OS %, median OS months), MODELS.md §4.2.
_CLASS_OUTCOMES = (("I", 61.9, 44.9), ("II", 40.0, 15.9), ("III", 16.8, 7.9))

REPORTED_OUTCOMES = tuple(
    outcome
    for rpa_class, os_2y_pct, median_os_months in _CLASS_OUTCOMES
    for outcome in (
        ReportedOutcome(
            group=f"class_{rpa_class}", label="2-year OS", low=os_2y_pct, high=os_2y_pct,
            unit="%", source=_OUTCOMES_SOURCE,
        ),
        ReportedOutcome(
            group=f"class_{rpa_class}", label="median OS", low=median_os_months,
            high=median_os_months, unit="months", source=_OUTCOMES_SOURCE,
        ),
    )
)

CLASS_III_NOTE = (
    "Class III: SBRT is generally preferred over a 7-week re-IMRT course (seed §5.4, [19])."
)
