"""Card: SRS suitability, Chua 2006 (MODELS.md §4.6, PROVISIONAL).

The prognostic score's points are not confirmed: the three factors are reported and the
patient is not assigned to a Chua group. Candidate = small rT1–2 lesion.
"""

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "srs_suitability"
VERSION = "1.1.0-provisional"
STATUS = ModelStatus.provisional
CITATION = "Chua et al. 2006, linac SRS for recurrent NPC (seed [89], §5.3)"

CANDIDATE_T_CATEGORIES = ("T1", "T2")  # small rT1–2 lesions only (MODELS.md §4.6)
# The volume limit is ScoringParameters.srs_max_volume_cm3 (default 10 cm³, MODELS.md §4.6).

_GROUP_OUTCOMES = (("good", 100, 100), ("intermediate", 42.5, 51.1), ("poor", 9.6, 0))
REPORTED_OUTCOMES = tuple(
    outcome
    for group, lffr_5y_pct, os_5y_pct in _GROUP_OUTCOMES
    for outcome in (
        ReportedOutcome(group=group, label="5-year local-failure-free rate", low=lffr_5y_pct,
                        high=lffr_5y_pct, unit="%", source="seed §5.3 (Chua 2006, [89])"),
        ReportedOutcome(group=group, label="5-year OS", low=os_5y_pct, high=os_5y_pct, unit="%",
                        source="seed §5.3 (Chua 2006, [89])"),
    )
)
PROVISIONAL_NOTE = (
    "Provisional: Chua 2006 points are not confirmed, so no good/intermediate/poor group is "
    "assigned; the three factors are shown."
)
