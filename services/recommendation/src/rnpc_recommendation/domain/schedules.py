"""Fractionation schedules the rules may suggest, and the EQD2 they carry.

Only schedules listed in MODELS.md §2 appear here; EQD2 is computed, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnpc_shared.contracts.recommendation import Schedule

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
    label: str
    total_dose_gy: float
    fractions: int
    fractions_per_day: int
    source: str

    def to_schedule(self, alpha_beta_gy: float, alpha_beta_late_gy: float) -> Schedule:
        """The contract schedule: EQD2 at the tumour α/β; the late-tissue EQD2 goes in the label."""
        late_gy = round(eqd2_gy(self.total_dose_gy, self.fractions, alpha_beta_late_gy), 2)
        return Schedule(
            total_dose_gy=self.total_dose_gy,
            fractions=self.fractions,
            fractions_per_day=self.fractions_per_day,
            eqd2_gy=round(eqd2_gy(self.total_dose_gy, self.fractions, alpha_beta_gy), 2),
            alpha_beta_gy=alpha_beta_gy,
            label=f"{self.label}; EQD2 {late_gy} Gy at α/β {alpha_beta_late_gy:g} Gy",
            source=self.source,
        )


# Preferred re-IMRT schedule: hyperfractionated, twice daily ≥ 6 h apart (MODELS.md §2, §5.4).
REIMRT_HYPERFRACTIONATED = ScheduleTemplate(
    label="hyperfractionated re-IMRT 65 Gy/54 fx twice daily, ≥ 6 h apart",
    total_dose_gy=65.0,
    fractions=54,
    fractions_per_day=2,
    source="You 2023, Lancet 401:917 (MODELS.md §2)",
)
# The You 2023 control arm, named in reasons as the standard alternative (MODELS.md §2).
REIMRT_STANDARD = ScheduleTemplate(
    label="standard re-IMRT 60 Gy/27 fx",
    total_dose_gy=60.0,
    fractions=27,
    fractions_per_day=1,
    source="You 2023 control arm, Lancet 401:917 (MODELS.md §2)",
)
# SRS 12.5–18 Gy × 1 (seed Table 3): the lower bound is shown, the median dose of Chua 2006/2009.
SRS_SINGLE_FRACTION = ScheduleTemplate(
    label="SRS 12.5 Gy × 1 (published range 12.5–18 Gy × 1; lower bound shown)",
    total_dose_gy=12.5,
    fractions=1,
    fractions_per_day=1,
    source="seed Table 3 [89–91] (MODELS.md §2)",
)
# SBRT 24–48 Gy/6 fx typical (seed §5.4 [92]); the lower bound is shown (Xiao 2001, 24 Gy/6–8 fx).
SBRT_SIX_FRACTIONS = ScheduleTemplate(
    label="SBRT 24 Gy/6 fx (typical range 24–48 Gy/6 fx; lower bound shown)",
    total_dose_gy=24.0,
    fractions=6,
    fractions_per_day=1,
    source="seed §5.4 [92], Table 3 [98] (MODELS.md §2)",
)
BRACHY_HDR_INTRACAVITARY = ScheduleTemplate(
    label="HDR intracavitary brachytherapy 24 Gy/3 fx",
    total_dose_gy=24.0,
    fractions=3,
    fractions_per_day=1,
    source="seed Table 3 [113], Leung 2005 (MODELS.md §2)",
)
