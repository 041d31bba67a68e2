"""The one catalogue of radiotherapy schedules the product knows (MODELS.md §2).

Scoring publishes it with BED/EQD2 computed (`GET /schedules`); the recommendation service
suggests schedules from it by id and never re-types a dose. Reported ranges are represented by
their bounding schedules (each end of the dose and fraction ranges), flagged `range_bound`.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOGUE_VERSION = "schedules/1.0.0"

_SEED_T3 = "seed Table 3"


@dataclass(frozen=True)
class KnownSchedule:
    id: str
    modality: str  # contract modality id
    label: str
    total_dose_gy: float
    fractions: int
    fractions_per_day: int
    source: str
    range_bound: bool = False  # one end of a reported range, not a schedule reported as such
    min_hours_between_fractions: float | None = None


def _range(prefix: str, modality: str, label: str, doses_gy: tuple[float, ...],
           fractions: tuple[int, ...], source: str) -> tuple[KnownSchedule, ...]:
    """Bounding schedules of "doses_gy in fractions": every combination of the range ends."""
    return tuple(
        KnownSchedule(f"{prefix}_{dose:g}gy_{n}fx".replace(".", "_"), modality,
                      f"{label} ({dose:g} Gy / {n} fx, range bound)", dose, n, 1, source,
                      range_bound=True)
        for dose in doses_gy
        for n in fractions
    )


SCHEDULES: tuple[KnownSchedule, ...] = (
    # Re-IMRT
    KnownSchedule("reimrt_60gy_27fx", "reimrt", "Standard re-IMRT 60 Gy / 27 fx, once daily", 60.0,
                  27, 1, "You 2023, Lancet 401:917 (control arm)"),
    *_range("reimrt", "reimrt", "Re-IMRT, median prescribed dose 60–70 Gy in 30–35 fx",
            (60.0, 70.0), (30, 35), "seed §5.2"),
    KnownSchedule("reimrt_hfx_65gy_54fx_bid", "reimrt",
                  "Hyperfractionated re-IMRT 65 Gy / 54 fx, twice daily ≥ 6 h apart", 65.0, 54, 2,
                  "You 2023, Lancet 401:917", min_hours_between_fractions=6.0),
    KnownSchedule("reimrt_hfx_64_8gy_54fx_bid", "reimrt",
                  "Hyperfractionated re-IMRT 64.8 Gy / 54 fx at 1.2 Gy twice daily", 64.8, 54, 2,
                  "seed §5.2 [82,87]"),
    # SRS: single fraction of 12.5–18 Gy
    *_range("srs", "srs", "SRS single fraction 12.5–18 Gy", (12.5, 18.0), (1,),
            f"seed §5.3, {_SEED_T3} [89–91]"),
    # SBRT: typical 24–48 Gy in 6 fx, and the Table 3 examples
    KnownSchedule("sbrt_24gy_6fx", "sbrt", "SBRT 24 Gy / 6 fx (low end of typical 24–48 Gy / 6 fx)",
                  24.0, 6, 1, "seed §5.4 [92]", range_bound=True),
    KnownSchedule("sbrt_48gy_6fx", "sbrt",
                  "SBRT 48 Gy / 6 fx (high end of typical 24–48 Gy / 6 fx)", 48.0, 6, 1,
                  f"seed §5.4 [92]; {_SEED_T3} Wu 2007 [99]"),
    KnownSchedule("sbrt_18gy_3fx", "sbrt", "SBRT 18 Gy / 3 fx", 18.0, 3, 1,
                  f"{_SEED_T3} Wu 2007 [99]"),
    *_range("sbrt", "sbrt", "SBRT 34 Gy / 2–6 fx", (34.0,), (2, 6),
            f"{_SEED_T3} Chua 2009 [91]"),
    KnownSchedule("sbrt_54gy_18fx", "sbrt", "SBRT 54 Gy / 18 fx", 54.0, 18, 1,
                  f"{_SEED_T3} Leung 2009 [94]"),
    *_range("sbrt", "sbrt", "SBRT 33 Gy / 3–5 fx", (33.0,), (3, 5), f"{_SEED_T3} Seo 2009 [95]"),
    KnownSchedule("sbrt_30gy_5fx", "sbrt", "SBRT 30 Gy / 5 fx", 30.0, 5, 1,
                  f"{_SEED_T3} Ozyigit 2011 [96], Dizman 2014 [97]"),
    # Brachytherapy
    KnownSchedule("brachy_hdr_24gy_3fx", "brachytherapy",
                  "HDR intracavitary brachytherapy 24 Gy / 3 fx", 24.0, 3, 1,
                  f"{_SEED_T3} Leung 2005 [113]"),
)

_BY_ID = {schedule.id: schedule for schedule in SCHEDULES}
if len(_BY_ID) != len(SCHEDULES):
    raise RuntimeError("schedule ids must be unique")


def schedule_by_id(schedule_id: str) -> KnownSchedule:
    return _BY_ID[schedule_id]
