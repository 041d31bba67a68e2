"""AJCC/UICC 8th edition staging and rT/rN derivation (MODELS.md §3)."""

import itertools

import pytest
from rnpc_shared.contracts.record import Extension, Neck
from rnpc_shared.contracts.scores import ScoringParameters

from rnpc_scoring.domain.calculators import compute_ajcc8_stage
from rnpc_scoring.domain.staging import derive_n, derive_t

PARAMS = ScoringParameters()
T = ["T0", "T1", "T2", "T3", "T4"]
N = ["N0", "N1", "N2", "N3"]
M = ["M0", "M1"]


def expected_group(t: str, n: str, m: str) -> str | None:
    """MODELS.md §3 read rule by rule, from the top group down (independent of the card's table)."""
    if m == "M1":
        return "IVB"  # IVB any M1
    if t == "T4" or n == "N3":
        return "IVA"  # IVA T4N0–2 or any T N3
    if t == "T3" or n == "N2":
        return "III"  # III T0–2N2, T3N0–2
    if t == "T2" or n == "N1":
        return "II"  # II T0–1N1, T2N0–1
    if t == "T1":
        return "I"  # I T1N0
    return None  # T0N0M0: no group


NO_EXTENSION = {"recurrence.extension": None, "recurrence.neck": None}


@pytest.mark.parametrize(("t", "n", "m"), list(itertools.product(T, N, M)))
def test_every_stage_group_cell(make_record, t, n, m):
    record = make_record({**NO_EXTENSION, "recurrence.site": "locoregional",
                          "recurrence.t_category": t, "recurrence.n_category": n,
                          "recurrence.m_category": m})
    result = compute_ajcc8_stage(record, PARAMS)
    group = expected_group(t, n, m)
    if group is None:
        assert not result.computable and result.value is None and result.notes
    else:
        assert result.computable
        assert result.value == result.category == group
        assert result.details["t_category"] == t and result.details["m_category"] == m


def test_missing_m_stages_as_m0_but_says_so(make_record):
    record = make_record({**NO_EXTENSION, "recurrence.t_category": "T3",
                          "recurrence.m_category": None})
    result = compute_ajcc8_stage(record, PARAMS)
    assert result.computable and result.value == "III"
    assert "recurrence.m_category" in result.missing_inputs
    assert result.details["m_category_assumed"] is True
    assert any("assumed M0" in note for note in result.notes)


@pytest.mark.parametrize(("n", "m", "group"), [("N3", "M0", "IVA"), ("N1", "M1", "IVB"),
                                               ("N3", None, "IVA")])
def test_regional_without_t_stages_only_where_t_does_not_matter(make_record, n, m, group):
    record = make_record({**NO_EXTENSION, "recurrence.site": "regional",
                          "recurrence.t_category": None, "recurrence.n_category": n,
                          "recurrence.m_category": m})
    result = compute_ajcc8_stage(record, PARAMS)
    assert result.computable and result.value == group


@pytest.mark.parametrize("n", ["N1", "N2"])
def test_regional_without_t_otherwise_not_computable(make_record, n):
    record = make_record({**NO_EXTENSION, "recurrence.site": "regional",
                          "recurrence.t_category": None, "recurrence.n_category": n})
    result = compute_ajcc8_stage(record, PARAMS)
    assert not result.computable
    assert result.missing_inputs == ["recurrence.t_category"]


# --- rT from extension flags ----------------------------------------------------------------

ALL_FALSE = {name: False for name in (
    "adjacent_soft_tissue", "skull_base_bone", "cervical_vertebra", "pterygoid_structures",
    "paranasal_sinuses", "cranial_nerves", "intracranial", "sphenoid_sinus", "hypopharynx",
    "orbit", "parotid", "beyond_lateral_pterygoid")} | {"parapharyngeal": "none"}


@pytest.mark.parametrize(
    ("positive", "expected"),
    [
        ({}, "T1"),
        ({"nasal_cavity": True, "oropharynx": True}, "T1"),  # still T1
        ({"parapharyngeal": "superficial"}, "T2"),
        ({"parapharyngeal": "deep"}, "T2"),
        ({"adjacent_soft_tissue": True}, "T2"),
        ({"sphenoid_sinus": True}, "T3"),  # the sphenoid sinus is a paranasal sinus
        ({"skull_base_bone": True, "parapharyngeal": "deep"}, "T3"),
        ({"pterygoid_structures": True}, "T3"),
        ({"cervical_vertebra": True}, "T3"),
        ({"paranasal_sinuses": True}, "T3"),
        ({"intracranial": True, "skull_base_bone": True}, "T4"),
        ({"cranial_nerves": True}, "T4"),
        ({"hypopharynx": True}, "T4"),
        ({"orbit": True}, "T4"),
        ({"parotid": True}, "T4"),
        ({"beyond_lateral_pterygoid": True}, "T4"),
    ],
)
def test_t_derived_when_every_flag_is_assessed(positive, expected):
    derivation = derive_t(Extension(**(ALL_FALSE | positive)))
    assert derivation.derived == expected


def test_t_not_derived_without_flags():
    assert derive_t(None).derived is None
    assert derive_t(Extension()).derived is None
    assert derive_t(Extension(fossa_of_rosenmuller=True)).derived is None  # not a T structure


def test_t4_flag_concludes_even_when_others_are_unknown():
    assert derive_t(Extension(intracranial=True)).derived == "T4"


def test_lower_category_needs_higher_flags_assessed():
    unknown_t4 = ALL_FALSE | {"skull_base_bone": True, "orbit": None}
    derivation = derive_t(Extension(**unknown_t4))
    assert derivation.derived is None  # the orbit could make it T4
    assert derivation.minimum == "T3"
    assert "orbit" in derivation.not_assessed


def test_entered_t_stands_and_conflict_is_reported(make_record):
    record = make_record({"recurrence.t_category": "T2",
                          "recurrence.extension": ALL_FALSE | {"skull_base_bone": True}})
    result = compute_ajcc8_stage(record, PARAMS)
    assert result.details["t_category"] == "T2"  # the clinician's entry stands
    assert result.details["t_category_derived"] == "T3"
    assert result.value == "II"
    [conflict] = result.details["conflicts"]
    assert "T3" in conflict and "skull_base_bone" in conflict
    assert conflict in result.notes


def test_under_staging_against_a_partial_flag_set_is_a_conflict(make_record):
    record = make_record({"recurrence.t_category": "T1",
                          "recurrence.extension": {"parapharyngeal": "deep"}})
    result = compute_ajcc8_stage(record, PARAMS)
    assert result.details["t_category_derived"] is None
    assert result.details["t_category_minimum_from_flags"] == "T2"
    assert any("at least T2" in c for c in result.details["conflicts"])


def test_higher_entry_than_partial_flags_is_not_a_conflict(make_record):
    # Unknown flags may explain a higher rT: nothing to report.
    record = make_record({"recurrence.t_category": "T4",
                          "recurrence.extension": {"parapharyngeal": "deep"}})
    assert compute_ajcc8_stage(record, PARAMS).details["conflicts"] == []


def test_example_record_is_consistent(make_record):
    result = compute_ajcc8_stage(make_record(), PARAMS)
    assert result.value == "II" and result.details["conflicts"] == []
    assert result.details["t_category_minimum_from_flags"] == "T2"  # superficial parapharyngeal


def test_derived_t_used_when_none_entered_only_with_positive_findings(make_record):
    base = {"recurrence.site": "regional", "recurrence.t_category": None,
            "recurrence.n_category": "N1", "recurrence.neck": None}
    confined = compute_ajcc8_stage(make_record(base | {"recurrence.extension": ALL_FALSE}), PARAMS)
    assert not confined.computable  # T0 or T1 cannot be told apart: no guess
    invaded = compute_ajcc8_stage(
        make_record(base | {"recurrence.extension": ALL_FALSE | {"cranial_nerves": True}}), PARAMS)
    assert invaded.computable and invaded.value == "IVA"
    assert any("regional but rT is T4" in c for c in invaded.details["conflicts"])


# --- rN from neck fields --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("neck", "expected"),
    [
        ({"node_count": 0}, "N0"),
        ({"node_count": 1, "largest_node_cm": 2.0, "below_cricoid": False, "bilateral": False},
         "N1"),
        ({"largest_node_cm": 6.0, "below_cricoid": False, "bilateral": False}, "N1"),  # ≤ 6 cm
        ({"largest_node_cm": 3.0, "below_cricoid": False, "bilateral": True}, "N2"),
        ({"largest_node_cm": 3.0, "below_cricoid": False, "bilateral": True,
          "retropharyngeal_only": True}, "N1"),  # bilateral retropharyngeal is N1
        ({"largest_node_cm": 6.1}, "N3"),  # > 6 cm
        ({"node_count": 1, "below_cricoid": True}, "N3"),
        ({"node_count": 2}, None),  # size and level unknown
        ({"largest_node_cm": 3.0, "bilateral": True}, None),  # below the cricoid unknown
        ({}, None),
    ],
)
def test_n_derivation(neck, expected):
    assert derive_n(Neck(**neck)).derived == expected


def test_n_conflict_is_reported_and_entry_stands(make_record):
    record = make_record({"recurrence.site": "locoregional", "recurrence.n_category": "N1",
                          "recurrence.neck": {"node_count": 1, "largest_node_cm": 7.0}})
    result = compute_ajcc8_stage(record, PARAMS)
    assert result.details["n_category"] == "N1"
    assert result.details["n_category_derived"] == "N3"
    assert result.value == "II"  # T2 N1 from the entry
    assert any("N3" in c for c in result.details["conflicts"])
