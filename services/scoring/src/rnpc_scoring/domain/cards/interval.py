"""Card: interval since prior radiotherapy (MODELS.md §2, exact)."""

from rnpc_shared.contracts.scores import ModelStatus

from rnpc_scoring.domain.cards import ward2018

MODEL = "interval_since_rt"
VERSION = "1.1.0"
STATUS = ModelStatus.exact
CITATION = (
    "Whole calendar months from prior RT end to recurrence diagnosis (MODELS.md §2); "
    "2-year cut-off as in Ward et al., Int J Radiat Oncol Biol Phys 2018;100:586 (seed [19])"
)

# The same cut-off as the Ward RPA, on dates: < 2 years vs ≥ 2 years (seed §3 [19]).
CUT_OFF_YEARS = ward2018.INTERVAL_YEARS
CUT_OFF_SOURCE = ward2018.INTERVAL_SOURCE
REPORTED_OUTCOMES = ()
