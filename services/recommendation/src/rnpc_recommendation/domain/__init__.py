"""The recommendation domain: pure decision rules over (record, scores, evidence) (MODELS.md §5)."""

from rnpc_recommendation.domain.engine import input_hash, recommend
from rnpc_recommendation.domain.rules import RULES, RULES_VERSION, Rule
from rnpc_recommendation.domain.schedules import eqd2_gy

__all__ = ["RULES", "RULES_VERSION", "Rule", "eqd2_gy", "input_hash", "recommend"]
