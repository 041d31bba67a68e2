"""Radiotherapy schedules the product knows (MODELS.md §2), with BED/EQD2 computed, never typed.

The catalogue is rnpc_shared.contracts.schedules (one source, read by recommendation too).

Reported ranges are represented by their bounding schedules (each end of the dose and fraction
ranges), flagged `range_bound`, so every EQD2 in the range lies between them. EQD2 at high dose
per fraction (SRS, SBRT) is a linear-quadratic extrapolation: read it with caution.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rnpc_shared.contracts.schedules import CATALOGUE_VERSION, SCHEDULES, KnownSchedule

from rnpc_scoring.domain.radiobiology import bed_gy, dose_per_fraction_gy, eqd2_gy

# The catalogue itself lives in the shared contracts: the one source for every service.
Schedule = KnownSchedule


def schedule_catalogue(alpha_betas: tuple[float, ...] = (10.0, 3.0)) -> list[dict[str, Any]]:
    """Every known schedule as plain data, with dose per fraction and BED/EQD2 per α/β (Gy)."""
    catalogue = []
    for schedule in SCHEDULES:
        dose, n = schedule.total_dose_gy, schedule.fractions
        catalogue.append({
            **asdict(schedule),
            "dose_per_fraction_gy": round(dose_per_fraction_gy(dose, n), 2),
            "eqd2": [
                {"alpha_beta_gy": ab, "eqd2_gy": round(eqd2_gy(dose, n, ab), 1),
                 "bed_gy": round(bed_gy(dose, n, ab), 1)}
                for ab in alpha_betas
            ],
            "catalogue_version": CATALOGUE_VERSION,
        })
    return catalogue
