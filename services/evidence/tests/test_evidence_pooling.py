"""DerSimonian-Laird pooling on the logit scale, checked against hand arithmetic and edge cases."""

from __future__ import annotations

import math
import random

import pytest

from rnpc_evidence.domain.catalogue import load_studies
from rnpc_evidence.domain.pooling import (
    METHOD_POOLED,
    METHOD_SINGLE,
    ReportedProportion,
    pool_proportions,
    pooled_summary,
)
from rnpc_shared.contracts.evidence import Range
from rnpc_shared.contracts.record import Modality

Z = 1.959963984540054  # two-sided 95% normal quantile


def point(percent: float) -> Range:
    return Range(low=percent, high=percent)


def pool(*items: ReportedProportion):
    return pool_proportions(items, modality=Modality.srs, metric="OS", horizon_years=2.0)


def expit_percent(logit: float) -> float:
    return 100 / (1 + math.exp(-logit))


def test_three_studies_match_hand_computed_dersimonian_laird() -> None:
    # A 50% of 20 -> 10 events; B 80% of 10 -> 8 events; C 25% of 40 -> 10 events.
    # Logits y = ln(e / (n - e)); variances v = 1/e + 1/(n - e).
    y = [math.log(10 / 10), math.log(8 / 2), math.log(10 / 30)]  # 0, ln 4, ln(1/3)
    v = [1 / 10 + 1 / 10, 1 / 8 + 1 / 2, 1 / 10 + 1 / 30]  # 0.2, 0.625, 0.1333
    w = [1 / vi for vi in v]  # 5, 1.6, 7.5
    assert sum(w) == pytest.approx(14.1)
    y_fixed = (5 * y[0] + 1.6 * y[1] + 7.5 * y[2]) / 14.1  # -0.42706
    q = 5 * (y[0] - y_fixed) ** 2 + 1.6 * (y[1] - y_fixed) ** 2 + 7.5 * (y[2] - y_fixed) ** 2
    c = 14.1 - (5**2 + 1.6**2 + 7.5**2) / 14.1  # 14.1 - 83.81 / 14.1 = 8.15603
    tau2 = (q - 2) / c  # df = k - 1 = 2; Q > df so tau² > 0
    i2 = (q - 2) / q * 100
    w_star = [1 / (vi + tau2) for vi in v]
    y_random = sum(ws * yi for ws, yi in zip(w_star, y, strict=True)) / sum(w_star)
    se = math.sqrt(1 / sum(w_star))
    # The same figures written out, so the arithmetic above is itself checked.
    assert (y_fixed, q, c, tau2, i2) == pytest.approx((-0.427058, 9.555476, 8.156028, 0.926367, 79.0696), abs=1e-5)
    assert (y_random, se) == pytest.approx((-0.057803, 0.635505), abs=1e-5)

    pooled = pool(
        ReportedProportion("a", 20, point(50)),
        ReportedProportion("b", 10, point(80)),
        ReportedProportion("c", 40, point(25)),
    )
    assert pooled is not None
    assert pooled.k == 3 and pooled.total_n == 70 and pooled.study_ids == ["a", "b", "c"]
    assert pooled.percent == pytest.approx(expit_percent(y_random), abs=0.005)  # 48.56
    assert pooled.percent == pytest.approx(48.56, abs=0.005)
    assert pooled.ci95_low_percent == pytest.approx(expit_percent(y_random - Z * se), abs=0.005)  # 21.36
    assert pooled.ci95_high_percent == pytest.approx(expit_percent(y_random + Z * se), abs=0.005)  # 76.63
    assert pooled.i2_percent == pytest.approx(i2, abs=0.005)
    assert pooled.tau2 == pytest.approx(tau2, abs=1e-6)
    assert pooled.method == METHOD_POOLED and pooled.excluded == []


def test_zero_percent_study_gets_continuity_correction() -> None:
    # 0% of 10: 0.5 added to events and non-events -> logit ln(0.5 / 10.5), variance 1/0.5 + 1/10.5.
    pooled = pool(ReportedProportion("zero", 10, point(0)))
    assert pooled is not None
    logit, variance = math.log(0.5 / 10.5), 1 / 0.5 + 1 / 10.5
    assert pooled.percent == 0  # one study: shown as reported (issue 9), not the corrected 4.55
    assert pooled.ci95_low_percent == 0  # widened to include the reported figure
    assert pooled.ci95_high_percent == pytest.approx(expit_percent(logit + Z * math.sqrt(variance)), abs=0.005)
    two = pool(ReportedProportion("zero", 10, point(0)), ReportedProportion("zero-2", 10, point(0)))
    assert two is not None and two.percent == pytest.approx(expit_percent(logit), abs=0.005)


def test_hundred_percent_study_gets_continuity_correction_only_on_itself() -> None:
    pooled = pool(ReportedProportion("all", 20, point(100)), ReportedProportion("half", 20, point(50)))
    assert pooled is not None
    y = [math.log(20.5 / 0.5), 0.0]  # corrected; the 50% study is not
    v = [1 / 20.5 + 1 / 0.5, 1 / 10 + 1 / 10]
    w = [1 / vi for vi in v]
    y_fixed = sum(wi * yi for wi, yi in zip(w, y, strict=True)) / sum(w)
    q = sum(wi * (yi - y_fixed) ** 2 for wi, yi in zip(w, y, strict=True))
    tau2 = max(0.0, (q - 1) / (sum(w) - sum(wi * wi for wi in w) / sum(w)))
    w_star = [1 / (vi + tau2) for vi in v]
    y_random = sum(ws * yi for ws, yi in zip(w_star, y, strict=True)) / sum(w_star)
    assert pooled.tau2 == pytest.approx(tau2, abs=1e-6)
    assert pooled.percent == pytest.approx(expit_percent(y_random), abs=0.005)
    assert 0 < pooled.ci95_low_percent < pooled.percent < pooled.ci95_high_percent < 100


def test_one_study_uses_its_own_logit_interval() -> None:
    pooled = pool(ReportedProportion("only", 40, point(25)))  # 10 of 40
    assert pooled is not None
    logit, se = math.log(10 / 30), math.sqrt(1 / 10 + 1 / 30)
    assert pooled.k == 1 and pooled.total_n == 40
    assert pooled.i2_percent is None and pooled.tau2 == 0
    assert pooled.percent == pytest.approx(25.0, abs=0.005)
    assert pooled.ci95_low_percent == pytest.approx(expit_percent(logit - Z * se), abs=0.005)
    assert pooled.ci95_high_percent == pytest.approx(expit_percent(logit + Z * se), abs=0.005)
    assert pooled.method == METHOD_SINGLE


def test_one_study_shows_the_figure_the_paper_reported() -> None:
    """Issue 9: 87% of 75 (Hu 2018 1-year LRFS) stays 87%, not 86.67% rebuilt from 65/75."""
    pooled = pool(ReportedProportion("hu", 75, point(87)))
    assert pooled is not None and pooled.percent == 87
    events_logit = math.log(65 / 10)  # the CI still comes from events: round(0.87 × 75) = 65
    se = math.sqrt(1 / 65 + 1 / 10)
    assert pooled.ci95_low_percent == pytest.approx(expit_percent(events_logit - Z * se), abs=0.005)
    assert pooled.ci95_low_percent < pooled.percent < pooled.ci95_high_percent


def test_missing_n_range_and_na_are_excluded_with_reasons() -> None:
    pooled = pool(
        ReportedProportion("kept", 40, point(25)),
        ReportedProportion("no-n", None, point(30)),
        ReportedProportion("ranged", 50, Range(low=8, high=64)),
        ReportedProportion("na", 50, None),
    )
    assert pooled is not None
    assert pooled.study_ids == ["kept"] and pooled.k == 1 and pooled.total_n == 40
    assert pooled.excluded == [
        "na: no figure (printed N/A, or not confirmed)",
        "no-n: n missing",
        "ranged: range 8–64%: not a single estimate",
    ]


def test_nothing_poolable_gives_none() -> None:
    assert pool(ReportedProportion("no-n", None, point(30))) is None
    assert pool() is None


def test_identical_proportions_have_no_heterogeneity() -> None:
    pooled = pool(*(ReportedProportion(f"s{i}", n, point(50)) for i, n in enumerate((10, 20, 40))))
    assert pooled is not None
    assert pooled.i2_percent == 0 and pooled.tau2 == 0
    assert pooled.percent == pytest.approx(50.0, abs=0.005)
    assert pooled.ci95_low_percent < 50 < pooled.ci95_high_percent


def test_events_round_half_up() -> None:
    # 50% of 17 = 8.5 events -> 9 (Python's round() would give 8); 9/17 = 52.94%.
    pooled = pool(ReportedProportion("odd", 17, point(50)), ReportedProportion("odd-2", 17, point(50)))
    assert pooled is not None and pooled.percent == pytest.approx(100 * 9 / 17, abs=0.005)


def test_summary_covers_outcomes_toxicity_and_reimrt_split() -> None:
    summary = pooled_summary(load_studies())
    keys = [(p.modality, p.metric, p.horizon_years, p.subgroup) for p in summary]
    assert len(keys) == len(set(keys))
    assert all(p.k >= 1 and 0 <= p.ci95_low_percent <= p.percent <= p.ci95_high_percent <= 100 for p in summary)
    for metric in ("late_grade3_toxicity", "grade5_toxicity"):
        for subgroup in ("endemic", "non_endemic"):
            assert (Modality.reimrt, metric, None, subgroup) in keys
    by_key = dict(zip(keys, summary, strict=True))
    # Seed §5.2 rest-of-world series [74,84-86]: grade 5 toxicity 0% in all four (n 14+17+27+14).
    non_endemic_deaths = by_key[(Modality.reimrt, "grade5_toxicity", None, "non_endemic")]
    assert non_endemic_deaths.k == 4 and non_endemic_deaths.total_n == 72
    # Tian 2014 [78] and Li 2018 [17] print 3-year OS as ranges: excluded, with the reason.
    reimrt_os3 = by_key[(Modality.reimrt, "OS", 3.0, None)]
    assert sorted(reimrt_os3.study_ids) == ["t2-chan-2017-ref83", "t2-hua-2012-ref76", "t2-roeder-2011-ref84"]
    assert len(reimrt_os3.excluded) == 3 and all("not a single estimate" in e for e in reimrt_os3.excluded)
    # Every modality with table rows has both toxicity estimates.
    for modality in {s.modality for s in load_studies()}:
        assert (modality, "late_grade3_toxicity", None, None) in keys
        assert (modality, "grade5_toxicity", None, None) in keys


def test_summary_is_independent_of_input_order() -> None:
    studies = list(load_studies())
    shuffled = studies[:]
    random.Random(7).shuffle(shuffled)
    assert [p.model_dump() for p in pooled_summary(shuffled)] == [p.model_dump() for p in pooled_summary(studies)]
