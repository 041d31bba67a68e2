"""Schedule catalogue (MODELS.md §2): every schedule present, EQD2 computed not typed."""

import json

import pytest
from rnpc_shared.contracts.record import Modality

from rnpc_scoring.domain.radiobiology import bed_gy, eqd2_gy
from rnpc_scoring.domain.schedules import SCHEDULES, schedule_catalogue

# (modality, total dose Gy, fractions, fractions per day) named in MODELS.md §2;
# reported ranges appear as their bounding schedules.
REQUIRED = [
    ("reimrt", 60.0, 27, 1),  # You 2023 control arm
    ("reimrt", 60.0, 30, 1), ("reimrt", 70.0, 35, 1),  # 60–70 Gy in 30–35 fx
    ("reimrt", 60.0, 35, 1), ("reimrt", 70.0, 30, 1),
    ("reimrt", 65.0, 54, 2),  # You 2023 hyperfractionation
    ("reimrt", 64.8, 54, 2),  # seed [82,87]
    ("srs", 12.5, 1, 1), ("srs", 18.0, 1, 1),
    ("sbrt", 24.0, 6, 1), ("sbrt", 48.0, 6, 1), ("sbrt", 18.0, 3, 1), ("sbrt", 34.0, 2, 1),
    ("sbrt", 34.0, 6, 1), ("sbrt", 54.0, 18, 1), ("sbrt", 33.0, 3, 1), ("sbrt", 33.0, 5, 1),
    ("sbrt", 30.0, 5, 1),
    ("brachytherapy", 24.0, 3, 1),  # seed [113]
]


@pytest.fixture(scope="module")
def catalogue():
    return schedule_catalogue()


@pytest.mark.parametrize(("modality", "dose_gy", "fractions", "per_day"), REQUIRED)
def test_required_schedule_is_catalogued(catalogue, modality, dose_gy, fractions, per_day):
    matches = [
        s for s in catalogue
        if (s["modality"], s["total_dose_gy"], s["fractions"]) == (modality, dose_gy, fractions)
    ]
    assert len(matches) == 1
    assert matches[0]["fractions_per_day"] == per_day
    assert matches[0]["source"]


def test_ids_unique_and_modalities_are_contract_ids(catalogue):
    ids = [s["id"] for s in catalogue]
    assert len(ids) == len(set(ids))
    assert {s["modality"] for s in catalogue} <= {m.value for m in Modality}


def test_eqd2_is_computed_for_each_requested_alpha_beta():
    for schedule in schedule_catalogue(alpha_betas=(10.0, 3.0, 2.0)):
        dose, n = schedule["total_dose_gy"], schedule["fractions"]
        assert [e["alpha_beta_gy"] for e in schedule["eqd2"]] == [10.0, 3.0, 2.0]
        for entry in schedule["eqd2"]:
            assert entry["eqd2_gy"] == round(eqd2_gy(dose, n, entry["alpha_beta_gy"]), 1)
            assert entry["bed_gy"] == round(bed_gy(dose, n, entry["alpha_beta_gy"]), 1)


def test_headline_schedules_match_hand_calculation(catalogue):
    hfx = next(s for s in catalogue if (s["total_dose_gy"], s["fractions"]) == (65.0, 54))
    std = next(s for s in catalogue if (s["total_dose_gy"], s["fractions"]) == (60.0, 27))
    assert hfx["eqd2"][0] == {"alpha_beta_gy": 10.0, "eqd2_gy": 60.7, "bed_gy": 72.8}
    assert std["eqd2"][0]["eqd2_gy"] == 61.1
    assert hfx["min_hours_between_fractions"] == 6.0  # "≥ 6 h apart" (You 2023)


def test_hyperfractionation_spares_late_tissue_relative_to_standard(catalogue):
    hfx = next(s for s in catalogue if (s["total_dose_gy"], s["fractions"]) == (65.0, 54))
    std = next(s for s in catalogue if (s["total_dose_gy"], s["fractions"]) == (60.0, 27))
    late = {s["id"]: s["eqd2"][1]["eqd2_gy"] for s in (hfx, std)}
    assert late[hfx["id"]] < late[std["id"]]


def test_catalogue_is_plain_json_and_not_shared_state():
    first = schedule_catalogue()
    json.dumps(first)
    first[0]["total_dose_gy"] = -1
    assert schedule_catalogue()[0]["total_dose_gy"] == SCHEDULES[0].total_dose_gy
