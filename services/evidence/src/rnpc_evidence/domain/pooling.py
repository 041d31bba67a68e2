"""Random-effects pooled proportions: DerSimonian-Laird on the logit scale.

Each study contributes events = round(percent / 100 * n) (half up) out of n. A 0% or 100% study
gets the standard 0.5 continuity correction (0.5 added to events and non-events) on that study
only, since its logit and variance are otherwise infinite. A study with a missing n, a printed
range (low != high: not a single estimate, so it is left out rather than guessed at) or no figure
(N/A, or not confirmed for a post-review trial) is excluded and listed with the reason.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

from rnpc_shared.contracts.evidence import PooledEstimate, Range, Study
from rnpc_shared.contracts.record import Modality

from rnpc_evidence.domain.catalogue import TOXICITY_METRICS, toxicity_percent

Z_95 = NormalDist().inv_cdf(0.975)
CONTINUITY_CORRECTION = 0.5
_CI_AND_EVENTS = (
    "events = round(percent / 100 * n) half up; 0.5 continuity correction on a 0% or 100% study; "
    "95% CI = logit ± 1.96 SE, back-transformed"
)
METHOD_POOLED = f"DerSimonian-Laird random effects on the logit scale; {_CI_AND_EVENTS}"
METHOD_SINGLE = (
    "single study, not pooled: the percent as the paper reported it; its own logit-scale CI; "
    f"{_CI_AND_EVENTS}"
)

# Re-IMRT toxicity split (seed §5.2: treatment mortality differs between Chinese and other series).
ENDEMIC = "endemic"
NON_ENDEMIC = "non_endemic"


@dataclass(frozen=True)
class ReportedProportion:
    """One study's published percentage for one quantity; percent None = no figure (N/A)."""

    study_id: str
    n: int | None
    percent: Range | None


def _exclusion_reason(item: ReportedProportion) -> str | None:
    if item.percent is None:
        return "no figure (printed N/A, or not confirmed)"
    if item.n is None or item.n < 1:
        return "n missing"
    if item.percent.low != item.percent.high:
        return f"range {item.percent.low:g}–{item.percent.high:g}%: not a single estimate"
    if not 0 <= item.percent.low <= 100:
        raise ValueError(f"{item.study_id}: percent {item.percent.low} is outside 0-100")
    return None


def _events(percent: float, n: int) -> int:
    # Round half up; Python's round() rounds half to even.
    return math.floor(percent * n / 100 + 0.5)


def _logit_and_variance(events: int, n: int) -> tuple[float, float]:
    """Logit of the proportion and its variance 1/events + 1/non-events."""
    if events in (0, n):
        successes, failures = events + CONTINUITY_CORRECTION, n - events + CONTINUITY_CORRECTION
    else:
        successes, failures = events, n - events
    return math.log(successes / failures), 1 / successes + 1 / failures


def _dersimonian_laird(effects: list[tuple[float, float]]) -> tuple[float, float, float, float | None]:
    """(pooled logit, its SE, tau², I² %) from (logit, variance) pairs; I² None for one study."""
    if len(effects) == 1:
        logit, variance = effects[0]
        return logit, math.sqrt(variance), 0.0, None
    weights = [1 / variance for _, variance in effects]
    weight_sum = sum(weights)
    fixed = sum(w * y for w, (y, _) in zip(weights, effects, strict=True)) / weight_sum
    q = sum(w * (y - fixed) ** 2 for w, (y, _) in zip(weights, effects, strict=True))
    df = len(effects) - 1
    c = weight_sum - sum(w * w for w in weights) / weight_sum
    tau2 = max(0.0, (q - df) / c)
    i2_percent = max(0.0, (q - df) / q) * 100 if q > 0 else 0.0
    random_weights = [1 / (variance + tau2) for _, variance in effects]
    pooled = sum(w * y for w, (y, _) in zip(random_weights, effects, strict=True)) / sum(random_weights)
    return pooled, math.sqrt(1 / sum(random_weights)), tau2, i2_percent


def _expit_percent(logit: float) -> float:
    return round(100 / (1 + math.exp(-logit)), 2)


def pool_proportions(
    reported: Iterable[ReportedProportion],
    *,
    modality: Modality,
    metric: str,
    horizon_years: float | None = None,
    subgroup: str | None = None,
) -> PooledEstimate | None:
    """The pooled percentage of the poolable studies; None when no study is poolable."""
    included: list[tuple[str, int, int]] = []  # (study_id, events, n)
    excluded: list[str] = []
    reported_items = sorted(reported, key=lambda r: r.study_id)
    for item in reported_items:  # a fixed order fixes the float sums
        reason = _exclusion_reason(item)
        if reason is not None:
            excluded.append(f"{item.study_id}: {reason}")
        elif item.percent is not None and item.n is not None:
            included.append((item.study_id, _events(item.percent.low, item.n), item.n))
    if not included:
        return None
    effects = [_logit_and_variance(events, n) for _, events, n in included]
    logit, se, tau2, i2_percent = _dersimonian_laird(effects)
    # One study: show its figure as the paper reported it (e.g. 87%, not 86.67% rebuilt from
    # rounded events); pooling across studies still uses events.
    reported_percent = {item.study_id: item.percent for item in reported_items}
    single = reported_percent[included[0][0]] if len(included) == 1 else None
    percent = single.low if single is not None else _expit_percent(logit)
    # A 0% or 100% study's continuity-corrected interval can exclude the reported figure: the
    # interval is widened to include it (an observed 0% has 0 as its lower bound).
    ci_low = min(_expit_percent(logit - Z_95 * se), percent)
    ci_high = max(_expit_percent(logit + Z_95 * se), percent)
    return PooledEstimate(
        modality=modality,
        metric=metric,
        horizon_years=horizon_years,
        subgroup=subgroup,
        k=len(included),
        total_n=sum(n for _, _, n in included),
        percent=percent,
        ci95_low_percent=ci_low,
        ci95_high_percent=ci_high,
        i2_percent=None if i2_percent is None else round(i2_percent, 2),
        tau2=round(tau2, 6),
        method=METHOD_POOLED if len(included) > 1 else METHOD_SINGLE,
        study_ids=[study_id for study_id, _, _ in included],
        excluded=excluded,
    )


_GroupKey = tuple[Modality, str, float | None, str | None]


def _sort_key(key: _GroupKey) -> tuple[int, str, float, str]:
    modality, metric, horizon_years, subgroup = key
    return (
        list(Modality).index(modality),
        metric,
        -1.0 if horizon_years is None else horizon_years,
        subgroup or "",
    )


def pooled_summary(studies: Iterable[Study]) -> list[PooledEstimate]:
    """Every (modality, metric, horizon) estimate with k >= 1, toxicity per modality, and the
    re-IMRT toxicity split endemic / non_endemic. Sorted; independent of input order."""
    groups: dict[_GroupKey, list[ReportedProportion]] = defaultdict(list)
    for study in studies:
        for outcome in study.outcomes:
            key = (study.modality, outcome.metric.value, outcome.horizon_years, None)
            groups[key].append(ReportedProportion(study.study_id, study.n, outcome.percent))
        for metric in TOXICITY_METRICS:
            item = ReportedProportion(study.study_id, study.n, toxicity_percent(study, metric))
            groups[(study.modality, metric, None, None)].append(item)
            if study.modality == Modality.reimrt and study.endemic is not None:
                subgroup = ENDEMIC if study.endemic else NON_ENDEMIC
                groups[(study.modality, metric, None, subgroup)].append(item)
    estimates = (
        pool_proportions(items, modality=key[0], metric=key[1], horizon_years=key[2], subgroup=key[3])
        for key, items in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))
    )
    return [estimate for estimate in estimates if estimate is not None]
