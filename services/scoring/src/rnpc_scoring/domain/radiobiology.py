"""Linear-quadratic radiobiology (MODELS.md §2, exact).

BED = D·(1 + d/(α/β)); EQD2 = D·(d + α/β)/(2 + α/β), with D the total dose and d the dose per
fraction. Cumulative dose over two courses: EQD2(course 1)·(1 − R) + EQD2(course 2), each course
with its own fraction size; R (recovery, 0–1) defaults to 0 (no recovery, the conservative
choice). No time factor and no incomplete-repair correction are modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnpc_scoring.domain.cards import nieder2006

# EQD2 is by definition the isoeffective dose delivered in 2 Gy fractions.
REFERENCE_DOSE_PER_FRACTION_GY = 2.0


@dataclass(frozen=True)
class Course:
    """One radiotherapy course: physical total dose and number of fractions."""

    total_dose_gy: float
    fractions: int

    @property
    def dose_per_fraction_gy(self) -> float:
        return dose_per_fraction_gy(self.total_dose_gy, self.fractions)


def _check(total_dose_gy: float, fractions: int, alpha_beta_gy: float | None = None) -> None:
    if not total_dose_gy > 0:
        raise ValueError(f"total_dose_gy must be > 0, got {total_dose_gy}")
    if isinstance(fractions, bool) or not isinstance(fractions, int) or fractions < 1:
        raise ValueError(f"fractions must be an integer >= 1, got {fractions!r}")
    if alpha_beta_gy is not None and not alpha_beta_gy > 0:
        raise ValueError(f"alpha_beta_gy must be > 0, got {alpha_beta_gy}")


def dose_per_fraction_gy(total_dose_gy: float, fractions: int) -> float:
    _check(total_dose_gy, fractions)
    return total_dose_gy / fractions


def bed_gy(total_dose_gy: float, fractions: int, alpha_beta_gy: float) -> float:
    """Biologically effective dose, Gy (at the given α/β)."""
    _check(total_dose_gy, fractions, alpha_beta_gy)
    d = total_dose_gy / fractions
    return total_dose_gy * (1 + d / alpha_beta_gy)


def eqd2_gy(total_dose_gy: float, fractions: int, alpha_beta_gy: float) -> float:
    """Equivalent dose in 2 Gy fractions, Gy (at the given α/β)."""
    _check(total_dose_gy, fractions, alpha_beta_gy)
    d = total_dose_gy / fractions
    return total_dose_gy * (d + alpha_beta_gy) / (REFERENCE_DOSE_PER_FRACTION_GY + alpha_beta_gy)


def cumulative_eqd2_gy(
    course1: Course, course2: Course, recovery_fraction: float, *, alpha_beta_gy: float
) -> float:
    """EQD2(course 1)·(1 − R) + EQD2(course 2); R is the fraction of course 1 recovered."""
    if not 0.0 <= recovery_fraction <= 1.0:
        raise ValueError(f"recovery_fraction must be in 0-1, got {recovery_fraction}")
    first = eqd2_gy(course1.total_dose_gy, course1.fractions, alpha_beta_gy)
    second = eqd2_gy(course2.total_dose_gy, course2.fractions, alpha_beta_gy)
    return first * (1.0 - recovery_fraction) + second


def nieder2006_spinal_cord(
    course1: Course, course2: Course, interval_months: float
) -> dict[str, Any]:
    """Nieder 2006 spinal-cord re-irradiation criteria, applied to the doses *to the cord*.

    Myelopathy risk appears small when cumulative BED ≤ 135.5 Gy₂, each course ≤ 98 Gy₂ and the
    interval is ≥ 6 months. Gy₂ is BED at α/β = 2 Gy, fixed by the criteria's definition.
    Callers must pass cord doses, never the tumour prescription.
    """
    alpha_beta_gy = nieder2006.ALPHA_BETA_GY
    bed1 = bed_gy(course1.total_dose_gy, course1.fractions, alpha_beta_gy)
    bed2 = bed_gy(course2.total_dose_gy, course2.fractions, alpha_beta_gy)
    cumulative = bed1 + bed2
    checks = {
        "cumulative_bed_ok": cumulative <= nieder2006.MAX_CUMULATIVE_BED_GY2,
        "each_course_bed_ok": max(bed1, bed2) <= nieder2006.MAX_COURSE_BED_GY2,
        "interval_ok": interval_months >= nieder2006.MIN_INTERVAL_MONTHS,
    }
    return {
        "course1_bed_gy2": bed1,
        "course2_bed_gy2": bed2,
        "cumulative_bed_gy2": cumulative,
        "interval_months": interval_months,
        **checks,
        "within_criteria": all(checks.values()),
        "alpha_beta_gy": alpha_beta_gy,
        "source": nieder2006.CITATION,
    }
