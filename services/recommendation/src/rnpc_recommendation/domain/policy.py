"""Institutional policy settings the rules apply: deployment choices, not clinical figures.

They are named as policy on every recommendation (`Recommendation.policies`) so a reader never
mistakes them for a number from the sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnpc_shared.contracts.recommendation import PolicySetting

# Default only; no source gives a maximum age for restaging imaging. Set per institution with
# RECOMMENDATION_RESTAGING_WINDOW_DAYS.
DEFAULT_RESTAGING_WINDOW_DAYS = 90


@dataclass(frozen=True)
class Policy:
    restaging_window_days: int = DEFAULT_RESTAGING_WINDOW_DAYS

    def settings(self) -> list[PolicySetting]:
        return [
            PolicySetting(
                name="restaging_window_days",
                value=self.restaging_window_days,
                unit="days",
                setting="RECOMMENDATION_RESTAGING_WINDOW_DAYS",
                text=(
                    "MRI or PET/CT older than this before the recurrence diagnosis is flagged as "
                    "not a current restaging. Institutional policy, not a clinical figure from "
                    "the sources."
                ),
            )
        ]
