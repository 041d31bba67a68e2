"""Card: lethal nasopharyngeal necrosis after re-IMRT, Yu 2016 (MODELS.md §4.5, PROVISIONAL).

The four independent factors are published; points and per-group rates are not confirmed, so
only the factor count is reported (no points, no predicted rate).
"""

from rnpc_shared.contracts.scores import ModelStatus, ReportedOutcome

MODEL = "lethal_necrosis_factors"
VERSION = "1.1.0-provisional"
STATUS = ModelStatus.provisional
CITATION = "Yu YH et al., Chin J Cancer 2016 (seed [88])"

ACCUMULATED_GTV_DOSE_THRESHOLD_GY = 145.5  # physical course 1 + course 2, inclusive ≥ (seed [88])
TUMOUR_VOLUME_THRESHOLD_CM3 = 25.38  # recurrent tumour volume, inclusive ≥ (seed [88])
FACTOR_NAMES = (
    "female_sex",
    "necrosis_before_reirradiation",
    "accumulated_gtv_dose_ge_145_5_gy",
    "tumour_volume_ge_25_38_cm3",
)

# Whole cohort only: 31 of 204 at risk (15.2%) died of necrosis (MODELS.md §4.5).
REPORTED_OUTCOMES = (
    ReportedOutcome(group="whole_cohort", label="died of lethal nasopharyngeal necrosis (n=204)",
                    low=15.2, high=15.2, unit="%", source=CITATION),
)
PROVISIONAL_NOTE = "Provisional factor count; points and per-group rates are not confirmed."
