"""Card: accumulated GTV prescription dose over both courses (MODELS.md §2 and §4.5, exact)."""

from rnpc_shared.contracts.scores import ModelStatus

from rnpc_scoring.domain.cards import yu2016

MODEL = "cumulative_gtv_dose"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
CITATION = (
    "Physical sum course 1 + course 2 and EQD2(course 1)·(1 − R) + EQD2(course 2) (MODELS.md §2); "
    "145.5 Gy threshold: Yu YH et al., Chin J Cancer 2016 (seed [88])"
)
# Yu 2016 lethal-necrosis factor: accumulated total prescription dose to the GTV ≥ 145.5 Gy.
THRESHOLD_GY = yu2016.ACCUMULATED_GTV_DOSE_THRESHOLD_GY
REPORTED_OUTCOMES = ()
