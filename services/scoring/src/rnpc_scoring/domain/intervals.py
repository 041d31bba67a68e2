"""Whole calendar months between two dates (MODELS.md §2), and the seed's "< 2 years" on dates."""

from __future__ import annotations

from datetime import date


def whole_calendar_months(start: date, end: date) -> int:
    """Full calendar months elapsed from `start` to `end` (end ≥ start).

    A month is complete on the same day of the month; when that day does not exist (e.g. the
    31st in a 30-day month) it completes on the 1st of the following month. This never counts
    a month early, the conservative reading for "> 24 months". Examples: 2022-03-15 → 2024-03-14
    is 23, → 2024-03-15 is 24; 2022-01-31 → 2022-02-28 is 0, → 2022-03-01 is 1.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    months = (end.year - start.year) * 12 + (end.month - start.month)
    return months - 1 if end.day < start.day else months


def anniversary(start: date, years: int) -> date:
    """`start` plus whole years; 29 February falls on 1 March in a common year (the later date,
    so the anniversary is never reached early)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return date(start.year + years, 3, 1)


def less_than_years(start: date, end: date, years: int) -> bool:
    """end < start + `years` years on calendar dates: Ward 2018's "< 2 years" (seed §3 [19])."""
    return end < anniversary(start, years)
