"""Pure clinical scoring domain: radiobiology, staging, schedules and the prognostic models.

No I/O, no clock, no mutable globals; every figure comes from a model card with its source.
"""

from rnpc_scoring.domain.calculators import SCORE_FUNCTIONS, compute_scores
from rnpc_scoring.domain.schedules import schedule_catalogue

__all__ = ["SCORE_FUNCTIONS", "compute_scores", "schedule_catalogue"]
