"""Card: EQD2 of the planned re-irradiation course (MODELS.md §2 and §4.1, exact)."""

from rnpc_shared.contracts.scores import ModelStatus

from rnpc_scoring.domain.cards import li2018

MODEL = "eqd2_planned_course"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
CITATION = (
    "Linear-quadratic model: EQD2 = D(d + α/β)/(2 + α/β) (MODELS.md §2); 68 Gy threshold: "
    "Li YQ et al., J Clin Oncol 2018 (seed [17])"
)
# The Li 2018 covariate: repeat-IMRT EQD2 ≥ 68 Gy.
THRESHOLD_GY = li2018.PLANNED_EQD2_THRESHOLD_GY
REPORTED_OUTCOMES = ()
