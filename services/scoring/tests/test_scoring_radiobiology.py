"""Linear-quadratic radiobiology (MODELS.md §2)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnpc_scoring.domain.radiobiology import (
    Course,
    bed_gy,
    cumulative_eqd2_gy,
    dose_per_fraction_gy,
    eqd2_gy,
    nieder2006_spinal_cord,
)


def test_hyperfractionated_65_gy_54_fx_eqd2_at_alpha_beta_10():
    # By hand: 65·(65/54 + 10)/12 = 60.69 Gy.
    assert eqd2_gy(65.0, 54, 10.0) == pytest.approx(65 * (65 / 54 + 10) / 12)
    assert round(eqd2_gy(65.0, 54, 10.0), 1) == 60.7


def test_standard_reimrt_60_gy_27_fx_eqd2_at_alpha_beta_10():
    # By hand: 60·(60/27 + 10)/12 = 61.11 Gy.
    assert round(eqd2_gy(60.0, 27, 10.0), 1) == 61.1


@pytest.mark.parametrize("alpha_beta_gy", [2.0, 3.0, 10.0])
def test_two_gy_fractions_are_their_own_eqd2(alpha_beta_gy):
    assert eqd2_gy(70.0, 35, alpha_beta_gy) == pytest.approx(70.0)


def test_bed_definition():
    # BED = D(1 + d/(α/β)): 70 Gy / 35 fx at α/β 10 → 70·1.2 = 84 Gy.
    assert bed_gy(70.0, 35, 10.0) == pytest.approx(84.0)
    assert dose_per_fraction_gy(64.8, 54) == pytest.approx(1.2)


@given(
    dose=st.floats(1.0, 150.0), fractions=st.integers(1, 100), alpha_beta=st.floats(0.5, 30.0)
)
def test_eqd2_is_bed_over_relative_effectiveness_of_2_gy(dose, fractions, alpha_beta):
    assert eqd2_gy(dose, fractions, alpha_beta) == pytest.approx(
        bed_gy(dose, fractions, alpha_beta) / (1 + 2 / alpha_beta)
    )


@given(
    dose=st.floats(1.0, 150.0),
    extra=st.floats(0.1, 50.0),
    fractions=st.integers(1, 100),
    alpha_beta=st.floats(0.5, 30.0),
)
def test_eqd2_rises_with_total_dose_at_fixed_fractions(dose, extra, fractions, alpha_beta):
    assert eqd2_gy(dose + extra, fractions, alpha_beta) > eqd2_gy(dose, fractions, alpha_beta)


@given(
    dose=st.floats(1.0, 150.0),
    fractions=st.integers(2, 100),
    fewer=st.integers(1, 99),
    alpha_beta=st.floats(0.5, 30.0),
)
def test_eqd2_rises_with_dose_per_fraction_at_fixed_total_dose(dose, fractions, fewer, alpha_beta):
    # Fixed D: EQD2 = D(D/n + α/β)/(2 + α/β) grows as n falls (d grows), for any α/β > 0.
    fewer_fractions = max(1, fractions - fewer)
    if fewer_fractions == fractions:
        return
    assert eqd2_gy(dose, fewer_fractions, alpha_beta) > eqd2_gy(dose, fractions, alpha_beta)


@given(dose=st.floats(1.0, 150.0), fractions=st.integers(1, 100))
def test_lower_alpha_beta_weights_fraction_size_more(dose, fractions):
    # Above 2 Gy per fraction a lower α/β gives a higher EQD2; below it, a lower one.
    d = dose / fractions
    late, tumour = eqd2_gy(dose, fractions, 3.0), eqd2_gy(dose, fractions, 10.0)
    if d > 2 + 1e-9:
        assert late > tumour
    elif d < 2 - 1e-9:
        assert late < tumour


def test_cumulative_eqd2_with_and_without_recovery():
    first, second = Course(70.0, 33), Course(60.0, 27)
    e1, e2 = eqd2_gy(70.0, 33, 10.0), eqd2_gy(60.0, 27, 10.0)
    assert cumulative_eqd2_gy(first, second, 0.0, alpha_beta_gy=10.0) == pytest.approx(e1 + e2)
    assert cumulative_eqd2_gy(first, second, 0.5, alpha_beta_gy=10.0) == pytest.approx(
        e1 * 0.5 + e2
    )
    assert cumulative_eqd2_gy(first, second, 1.0, alpha_beta_gy=10.0) == pytest.approx(e2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: eqd2_gy(0.0, 10, 10.0), "total_dose_gy"),
        (lambda: eqd2_gy(60.0, 0, 10.0), "fractions"),
        (lambda: eqd2_gy(60.0, 30, 0.0), "alpha_beta_gy"),
        (lambda: cumulative_eqd2_gy(Course(60, 30), Course(60, 30), 1.5, alpha_beta_gy=3.0),
         "recovery_fraction"),
    ],
)
def test_invalid_inputs_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nieder_criteria_boundaries():
    # 50 Gy / 25 fx to the cord: BED at α/β 2 = 50·(1 + 2/2) = 100 Gy₂ (> 98 per course).
    assert bed_gy(50.0, 25, 2.0) == pytest.approx(100.0)
    too_hot = nieder2006_spinal_cord(Course(50.0, 25), Course(10.0, 5), interval_months=12)
    assert too_hot["each_course_bed_ok"] is False
    assert too_hot["within_criteria"] is False

    # 45 Gy / 25 fx: BED 45·1.9 = 85.5 Gy₂; plus 25 Gy / 25 fx: 25·1.5 = 37.5 Gy₂ → 123 ≤ 135.5.
    ok = nieder2006_spinal_cord(Course(45.0, 25), Course(25.0, 25), interval_months=6)
    assert ok["cumulative_bed_gy2"] == pytest.approx(123.0)
    assert ok["within_criteria"] is True
    short = nieder2006_spinal_cord(Course(45.0, 25), Course(25.0, 25), interval_months=5)
    assert short["interval_ok"] is False and short["within_criteria"] is False


def test_nieder_cumulative_bed_limit_is_inclusive():
    # 40 Gy / 20 fx: 40·(1 + 2/2) = 80 Gy₂; 37 Gy / 37 fx: 37·(1 + 1/2) = 55.5 Gy₂; sum 135.5.
    at_limit = nieder2006_spinal_cord(Course(40.0, 20), Course(37.0, 37), interval_months=6)
    assert at_limit["cumulative_bed_gy2"] == 135.5
    assert at_limit["within_criteria"] is True
    above = nieder2006_spinal_cord(Course(40.0, 20), Course(37.5, 37), interval_months=6)
    assert above["cumulative_bed_ok"] is False
