"""Loading the packaged evidence and filtering it."""

from __future__ import annotations

from rnpc_evidence.domain.catalogue import evidence_source, filter_studies, load_studies
from rnpc_shared.contracts.evidence import OutcomeMetric, Range
from rnpc_shared.contracts.record import Modality


def ids(studies) -> list[str]:
    return sorted(s.study_id for s in studies)


def test_load_returns_independent_copies() -> None:
    first = load_studies()
    first[0].n = 999
    first[0].outcomes.clear()
    again = load_studies()
    assert again[0].n != 999 and again[0].outcomes
    assert "Tables 1" in evidence_source()


def test_na_is_missing_never_zero() -> None:
    by_id = {s.study_id: s for s in load_studies()}
    assert by_id["t1-liu-2017-ref45"].late_grade3_toxicity_percent is None  # printed N/A
    assert by_id["t1-chan-2018-ref49"].median_follow_up_months is None  # printed N/A
    assert by_id["t1-chan-2018-ref49"].grade5_toxicity_percent == Range(low=0, high=0)  # printed 0
    assert by_id["t3-shen-2015-ref111"].grade5_toxicity_percent is None


def test_filter_by_modality_metric_horizon_and_endemic() -> None:
    studies = load_studies()
    assert ids(filter_studies(studies, modality="proton")) == ["t3-dionisi-2019-ref103", "t3-lin-1999-ref102"]
    assert ids(filter_studies(studies, modality=Modality.proton, metric="OS", horizon_years=1.5)) == [
        "t3-dionisi-2019-ref103"
    ]
    assert ids(filter_studies(studies, metric=OutcomeMetric.LRFS)) == ["t3-hu-2018-ref108"]
    assert ids(filter_studies(studies, horizon_years=1.5)) == ["t3-dionisi-2019-ref103"]
    assert ids(filter_studies(studies, modality="reimrt", endemic=False)) == [
        "t2-agas-2019-ref74",
        "t2-karam-2016-ref86",
        "t2-puebla-2015-ref85",
        "t2-roeder-2011-ref84",
    ]
    # Unknown endemic status (Tables 1/3, post-review) matches neither True nor False.
    assert filter_studies(studies, modality="enp", endemic=True) == []
    assert len(filter_studies(studies)) == len(studies)


def test_filter_by_toxicity_keeps_only_reported_figures() -> None:
    brachy = filter_studies(load_studies(), modality="brachytherapy", metric="grade5_toxicity")
    assert ids(brachy) == ["t3-yan-2017-ref112"]  # Kwong, Shen and Leung print N/A
    assert filter_studies(load_studies(), metric="grade5_toxicity", horizon_years=5.0) == []
