"""Fractionation schedules the rules may suggest, and the EQD2 they carry.

Schedules are taken by id from the one shared catalogue (MODELS.md §2); EQD2 is computed, never
typed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnpc_shared.contracts.recommendation import Schedule
from rnpc_shared.contracts.schedules import CATALOGUE_VERSION, KnownSchedule, schedule_by_id

EQD2_REFERENCE_DOSE_PER_FRACTION_GY = 2.0


def eqd2_gy(total_dose_gy: float, fractions: int, alpha_beta_gy: float) -> float:
    """EQD2 = D·(d + α/β)/(2 + α/β), d = D/n (MODELS.md §2, linear-quadratic model).

    Twice-daily fractions ≥ 6 h apart are treated as independent (You 2023 spacing), so the
    same formula applies; incomplete repair is not modelled.
    """
    dose_per_fraction_gy = total_dose_gy / fractions
    return (
        total_dose_gy
        * (dose_per_fraction_gy + alpha_beta_gy)
        / (EQD2_REFERENCE_DOSE_PER_FRACTION_GY + alpha_beta_gy)
    )


@dataclass(frozen=True)
class ScheduleTemplate:
    """A schedule of the shared catalogue (by id) plus why this one is shown."""

    known: KnownSchedule
    shown_as: str = ""  # e.g. "lower bound of the published range shown"

    @property
    def total_dose_gy(self) -> float:
        return self.known.total_dose_gy

    @property
    def fractions(self) -> int:
        return self.known.fractions

    def to_schedule(self, alpha_beta_gy: float, alpha_beta_late_gy: float) -> Schedule:
        """The contract schedule: EQD2 at the tumour α/β; the late-tissue EQD2 goes in the label."""
        known = self.known
        late_gy = round(eqd2_gy(known.total_dose_gy, known.fractions, alpha_beta_late_gy), 2)
        shown_as = f" ({self.shown_as})" if self.shown_as else ""
        return Schedule(
            total_dose_gy=known.total_dose_gy,
            fractions=known.fractions,
            fractions_per_day=known.fractions_per_day,
            eqd2_gy=round(eqd2_gy(known.total_dose_gy, known.fractions, alpha_beta_gy), 2),
            alpha_beta_gy=alpha_beta_gy,
            label=f"{known.label}{shown_as}; EQD2 {late_gy} Gy at α/β {alpha_beta_late_gy:g} Gy",
            source=f"{known.source} (schedule {known.id}, {CATALOGUE_VERSION})",
        )


# Every schedule comes from the one catalogue (rnpc_shared.contracts.schedules, MODELS.md §2).
# Preferred re-IMRT schedule: hyperfractionated, twice daily ≥ 6 h apart (MODELS.md §2, §5.4).
REIMRT_HYPERFRACTIONATED = ScheduleTemplate(schedule_by_id("reimrt_hfx_65gy_54fx_bid"))
# The You 2023 control arm, named in reasons as the standard alternative (MODELS.md §2).
REIMRT_STANDARD = ScheduleTemplate(schedule_by_id("reimrt_60gy_27fx"))
# SRS 12.5–18 Gy × 1 (seed Table 3): the lower bound is shown, the median dose of Chua 2006/2009.
SRS_SINGLE_FRACTION = ScheduleTemplate(
    schedule_by_id("srs_12_5gy_1fx"), "published range 12.5–18 Gy × 1; lower bound shown"
)
# SBRT 24–48 Gy/6 fx typical (seed §5.4 [92]); the lower bound is shown (Xiao 2001, 24 Gy/6–8 fx).
SBRT_SIX_FRACTIONS = ScheduleTemplate(
    schedule_by_id("sbrt_24gy_6fx"), "typical range 24–48 Gy/6 fx; lower bound shown"
)
BRACHY_HDR_INTRACAVITARY = ScheduleTemplate(schedule_by_id("brachy_hdr_24gy_3fx"))
