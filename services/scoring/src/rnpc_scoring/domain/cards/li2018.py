"""Card: Li 2018 prognostic index for salvage re-IMRT (MODELS.md §4.1, PROVISIONAL).

Only the hazard ratios and the cut-off are published in our sources; the points are derived
from them as 100 × ln(HR), rounded (MODELS.md §4.1). They are not the published nomogram
points; confirm against the PRANCIS calculator before relying on a value near the cut-off.
"""

import math

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "li2018_prognostic_index"
VERSION = "1.1.0-provisional"
STATUS = ModelStatus.provisional
CITATION = (
    "Li YQ, Tian YM, Tan SH et al., J Clin Oncol 2018 (PMID 29412781; seed [17]); "
    "online calculator PRANCIS, http://prancis.medlever.com (seed [18])"
)

# Hazard ratios for overall survival, training cohort (MODELS.md §4.1).
HR_PER_CM3_GTV = 1.01
HR_PER_YEAR_AGE = 1.02
HR_PLANNED_EQD2_GE_THRESHOLD = 1.42
HR_PRIOR_GRADE3_TOXICITY = 1.90
HR_RT3_4 = 1.96

PLANNED_EQD2_THRESHOLD_GY = 68.0  # repeat-IMRT EQD2 ≥ 68 Gy (seed §3, [17])
HIGH_RISK_T_CATEGORIES = ("T3", "T4")  # rT3–4 (seed §3, [17])
HIGH_RISK_CUT_OFF = 252  # fixed cut-off: index ≥ 252 is high risk (MODELS.md §4.1)


def _points(hazard_ratio: float) -> int:
    return round(100 * math.log(hazard_ratio))


POINTS_PER_CM3_GTV = _points(HR_PER_CM3_GTV)
POINTS_PER_YEAR_AGE = _points(HR_PER_YEAR_AGE)
POINTS_PLANNED_EQD2_GE_THRESHOLD = _points(HR_PLANNED_EQD2_GE_THRESHOLD)
POINTS_PRIOR_GRADE3_TOXICITY = _points(HR_PRIOR_GRADE3_TOXICITY)
POINTS_RT3_4 = _points(HR_RT3_4)

_SEED = "seed §3 (Li 2018, [17])"
_LI = "Li YQ et al., J Clin Oncol 2018 (MODELS.md §4.1)"
REPORTED_OUTCOMES = (
    ReportedOutcome(group="low_risk", label="3-year OS", low=69, high=74, unit="%", source=_SEED),
    ReportedOutcome(group="high_risk", label="3-year OS", low=15, high=31, unit="%", source=_SEED),
    ReportedOutcome(group="high_risk", label="3-year OS, NCCS validation cohort", low=15, high=15,
                    unit="%", source=_LI),
    ReportedOutcome(group="high_risk", label="3-year OS, SYSUCC-B validation cohort", low=31,
                    high=31, unit="%", source=_LI),
    ReportedOutcome(group="high_risk", label="3-year grade-5-toxicity-free, NCCS validation cohort",
                    low=44, high=44, unit="%", source=_LI),
    ReportedOutcome(group="high_risk",
                    label="3-year grade-5-toxicity-free, SYSUCC-B validation cohort",
                    low=46, high=46, unit="%", source=_LI),
)

PROVISIONAL_NOTE = (
    "Provisional: points are 100 × ln(HR) rounded, not confirmed published points; never the "
    "only reason for 'not recommended'. Check with the PRANCIS calculator."
)
BAND_NOTES = {
    "low_risk": "Low risk: ideal candidates for curative re-IMRT (seed §3).",
    "high_risk": "High risk: offer clinical trials (seed §3).",
}
T_CONFLICT_NOTE = (
    "rT {flags} staged from the extension flags is used instead of the entered rT {entered} "
    "(they conflict; the more advanced rT is scored, the conservative reading for a risk index)."
)
SCOPE_NOTE = "Developed for isolated local recurrence treated with salvage IMRT (seed §3)."
