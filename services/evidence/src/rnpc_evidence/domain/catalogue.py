"""The curated evidence base: seed Tables 1-3 and post-review trials, from the packaged JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rnpc_shared.contracts.evidence import OutcomeMetric, Range, Study
from rnpc_shared.contracts.record import Modality

DATA_FILE = "evidence_v1.json"

# Pseudo-metrics for the two toxicity columns (PooledEstimate.metric names them the same way).
LATE_GRADE3_TOXICITY = "late_grade3_toxicity"
GRADE5_TOXICITY = "grade5_toxicity"
TOXICITY_METRICS = (LATE_GRADE3_TOXICITY, GRADE5_TOXICITY)


@dataclass(frozen=True)
class Catalogue:
    evidence_version: str
    source: str
    studies: tuple[Study, ...]


@cache
def _catalogue() -> Catalogue:
    text = (resources.files("rnpc_evidence") / "data" / DATA_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    studies = tuple(Study.model_validate(item) for item in raw["studies"])
    ids = [study.study_id for study in studies]
    duplicates = sorted({sid for sid in ids if ids.count(sid) > 1})
    if duplicates:
        raise ValueError(f"{DATA_FILE}: duplicate study_id {duplicates}")
    return Catalogue(raw["evidence_version"], raw["source"], studies)


def evidence_version() -> str:
    return _catalogue().evidence_version


def evidence_source() -> str:
    return _catalogue().source


def load_studies() -> tuple[Study, ...]:
    """Every study, in data-file order (table order). Copies, so callers cannot alter the cache."""
    return tuple(study.model_copy(deep=True) for study in _catalogue().studies)


def toxicity_percent(study: Study, metric: str) -> Range | None:
    """The study's Range for a toxicity pseudo-metric (None when printed N/A)."""
    if metric == LATE_GRADE3_TOXICITY:
        return study.late_grade3_toxicity_percent
    if metric == GRADE5_TOXICITY:
        return study.grade5_toxicity_percent
    raise ValueError(f"metric must be one of {TOXICITY_METRICS}, got {metric!r}")


def _reports(study: Study, metric: str | None, horizon_years: float | None) -> bool:
    if metric in TOXICITY_METRICS:
        # Toxicity has no horizon: asking for one matches nothing.
        return horizon_years is None and toxicity_percent(study, metric) is not None
    wanted = None if metric is None else OutcomeMetric(metric)
    return any(
        (wanted is None or outcome.metric == wanted)
        and (horizon_years is None or outcome.horizon_years == horizon_years)
        for outcome in study.outcomes
    )


def filter_studies(
    studies: Iterable[Study],
    modality: Modality | str | None = None,
    metric: OutcomeMetric | str | None = None,
    horizon_years: float | None = None,
    endemic: bool | None = None,
) -> list[Study]:
    """Studies matching every given criterion, input order kept.

    `metric` is an OutcomeMetric or 'late_grade3_toxicity' / 'grade5_toxicity' (a reported,
    non-N/A value); `horizon_years` alone matches any outcome at that horizon; `endemic` keeps
    only studies whose endemic flag equals it (unknown = None never matches True or False).
    """
    wanted_modality = None if modality is None else Modality(modality)
    outcome_filter = metric is not None or horizon_years is not None
    metric_name = None if metric is None else str(metric)
    return [
        study
        for study in studies
        if (wanted_modality is None or study.modality == wanted_modality)
        and (endemic is None or study.endemic is endemic)
        and (not outcome_filter or _reports(study, metric_name, horizon_years))
    ]
