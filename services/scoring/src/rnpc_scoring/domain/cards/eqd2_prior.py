"""Card: EQD2 of the prior (first) radiotherapy course (MODELS.md §2, exact)."""

from rnpc_shared.contracts.scores import ModelStatus

MODEL = "eqd2_prior_course"
VERSION = "1.0.0"
STATUS = ModelStatus.exact
CITATION = (
    "Linear-quadratic model: BED = D(1 + d/(α/β)), EQD2 = D(d + α/β)/(2 + α/β) (MODELS.md §2)"
)
REPORTED_OUTCOMES = ()
