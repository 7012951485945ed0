"""The calibration check passes calibrated probabilities and fails constant, inflated and too extreme ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logit

from training.evaluate import calibration_check, expected_calibration_error


def calibrated(seed: int, rows: int = 5000, centre: float = -3.5) -> tuple[np.ndarray, np.ndarray]:
    """True win probabilities around 4% and outcomes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(centre, 1.0, rows))
    return (rng.random(rows) < p).astype(int), p


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_probabilities_the_outcomes_were_drawn_from_pass(seed: int) -> None:
    y, p = calibrated(seed)
    check = calibration_check(y, p)
    assert check.passes, check.reason
    assert check.reason.startswith("calibrated: ")
    assert abs(check.slope - 1) < 0.25 and check.slope_se < 0.1
    assert abs(check.intercept) < 0.15


def test_a_constant_zero_fails_although_its_ece_is_under_the_old_bar() -> None:
    y, _ = calibrated(0)
    p = np.zeros(len(y))
    assert expected_calibration_error(y, p) < 0.05  # what the suite used to call calibrated
    check = calibration_check(y, p)
    assert not check.passes
    assert "the predictions do not vary, so the calibration slope cannot be estimated" in check.reason
    assert "mean prediction 0.0000 against a win rate of" in check.reason
    assert math.isnan(check.slope) and check.slope_se == math.inf


def test_a_constant_at_the_base_rate_fails() -> None:
    y, _ = calibrated(0)
    check = calibration_check(y, np.full(len(y), y.mean()))
    assert abs(check.mean_difference) < 1e-12  # right on average ...
    assert check.ece < 0.01
    assert not check.passes  # ... and no information about which lead wins
    assert check.reason == "the predictions do not vary, so the calibration slope cannot be estimated"


def test_predictions_that_barely_vary_fail() -> None:
    y, p = calibrated(0)
    flat = p.mean() + (p - p.mean()) * 0.01
    check = calibration_check(y, flat)
    assert not check.passes
    assert "the predictions vary too little for 5000 rows to estimate the calibration slope" in check.reason


def test_doubled_probabilities_fail_on_the_mean() -> None:
    y, p = calibrated(0)
    check = calibration_check(y, 2 * p)
    assert not check.passes
    assert check.mean_difference == pytest.approx(check.observed_rate, rel=0.2)  # twice the rate: off by the rate
    assert "mean prediction" in check.reason


def test_predictions_three_times_too_extreme_fail_on_the_slope() -> None:
    # The outcomes follow logit P(win) = -3.5 + 0.3 (logit p + 3.5): a calibration slope of 0.3.
    y, p = calibrated(0)
    extreme = expit((logit(p) + 3.5) / 0.3 - 3.5)
    check = calibration_check(y, extreme)
    assert check.slope == pytest.approx(0.3, abs=0.06)
    assert not check.passes
    assert f"calibration slope {check.slope:.2f}" in check.reason and "too extreme" in check.reason


def test_a_curve_off_the_diagonal_in_the_middle_fails_on_ece_alone() -> None:
    # 2,000 rows at each of logit p = -2, -1, 1, 2 (p = 0.12, 0.27, 0.73, 0.88) whose win rates are 0.04, 0.45,
    # 0.55, 0.96: right on average (both 0.5), a slope near 1 (the ends are too timid, the middle too
    # extreme), and yet off by 0.08 to 0.18 everywhere. Won and lost rows alternate within each group.
    rates = [0.04, 0.45, 0.55, 0.96]
    p = np.repeat(expit(np.array([-2.0, -1.0, 1.0, 2.0])), 2000)
    steps = np.arange(2000)
    y = np.concatenate([np.floor((steps + 1) * r) - np.floor(steps * r) for r in rates])
    check = calibration_check(y, p)
    assert (check.mean_predicted, check.observed_rate) == pytest.approx((0.5, 0.5))
    assert 0.9 < check.slope < 1.0
    assert not check.passes
    assert check.reason.startswith("ECE ") and "slope" not in check.reason and "mean" not in check.reason


def test_the_slope_and_intercept_of_a_tiny_case_equal_the_hand_count() -> None:
    # Three leads at p = 0.2 (one won) and three at p = 0.8 (two won). Two groups: the logistic fit reproduces
    # each group's rate, logit(1/3) = -ln 2 = a + b (-ln 4) and logit(2/3) = ln 2 = a + b ln 4, so b = 1/2, a = 0.
    # Fisher information at the fit: each row adds mu (1 - mu) = 2/9 times (1, x; x, x^2) with x = -+ln 4, so
    # var(b) = 1 / (6 * 2/9 * (ln 4)^2) and SE = sqrt(3/4) / ln 4 = 0.625.
    # Intercept with the slope fixed at 1: sum (y - expit(a + logit p)) = 3 - (3 * 0.2 + 3 * 0.8) = 0 at a = 0.
    y = np.array([1, 0, 0, 1, 1, 0])
    p = np.array([0.2, 0.2, 0.2, 0.8, 0.8, 0.8])
    check = calibration_check(y, p)
    assert check.slope == pytest.approx(0.5, abs=1e-9)
    assert check.slope_se == pytest.approx(math.sqrt(0.75) / math.log(4), abs=1e-9)
    assert check.intercept == pytest.approx(0.0, abs=1e-9)
    assert (check.mean_predicted, check.observed_rate) == pytest.approx((0.5, 0.5))
    assert not check.passes and "vary too little for 6 rows" in check.reason  # six rows cannot tell


def test_a_weight_counts_as_that_many_rows() -> None:
    y, p = calibrated(0, rows=2000)
    weighted = calibration_check(y, p, weights=np.full(len(y), 2.0))
    repeated = calibration_check(np.repeat(y, 2), np.repeat(p, 2))
    figures = ("mean_predicted", "observed_rate", "mean_difference_allowed", "intercept", "slope", "slope_se", "ece")
    for field in figures:
        assert getattr(weighted, field) == pytest.approx(getattr(repeated, field), rel=1e-9), field
    tiny = calibration_check(np.array([1, 0, 1, 0]), np.array([0.2, 0.2, 0.8, 0.8]), weights=np.array([1, 2, 2, 1]))
    assert tiny.slope == pytest.approx(0.5, abs=1e-9)  # the six rows of the hand-counted case


def test_outcomes_of_one_class_cannot_be_checked() -> None:
    check = calibration_check(np.zeros(100), np.linspace(0.01, 0.2, 100))
    assert not check.passes and check.reason == "all 100 rows are lost: calibration cannot be checked"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per row"):
        calibration_check(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="0/1"):
        calibration_check(np.array([0, 2]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="probabilities"):
        calibration_check(np.array([0, 1]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="weights"):
        calibration_check(np.array([0, 1]), np.array([0.5, 0.5]), weights=np.array([-1.0, 1.0]))


def test_a_leads_rows_count_as_one_unit_in_the_standard_errors() -> None:
    """Five copies of every row, as five moments of one lead that win or lose together: grouped by lead, the
    slope's standard error is that of the unique rows (the sandwich of k copies is k^2 M inside k H^-1 on
    each side); counted as rows, it is sqrt(5) times too small. The mean difference's noise is worked out
    by hand from its formula."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.6, 400)
    y = (rng.random(400) < p).astype(np.float64)
    k, leads = 5, np.arange(400)
    unique = calibration_check(y, p, groups=leads)
    grouped = calibration_check(np.repeat(y, k), np.repeat(p, k), groups=np.repeat(leads, k))
    as_rows = calibration_check(np.repeat(y, k), np.repeat(p, k))
    unique_model_based = calibration_check(y, p)
    assert grouped.slope == pytest.approx(unique.slope, rel=1e-9)
    assert grouped.slope_se == pytest.approx(unique.slope_se, rel=1e-9)
    assert as_rows.slope_se == pytest.approx(unique_model_based.slope_se / math.sqrt(k), rel=1e-9)
    assert grouped.slope_se > 2 * as_rows.slope_se
    d = p.mean() - y.mean()
    independent = math.sqrt(k * float(np.sum(p * (1 - p)))) / (k * 400)
    robust = math.sqrt(float(np.sum((k * (y - p + d)) ** 2))) / (k * 400)
    assert robust > independent  # the lead's five rows are one draw, not five
    assert grouped.mean_difference_allowed == pytest.approx(max(0.1 * y.mean(), 3 * robust), rel=1e-9)
    assert as_rows.mean_difference_allowed == pytest.approx(max(0.1 * y.mean(), 3 * independent), rel=1e-9)
    # ECE's noise floor: a lead's rows share one draw, so it is that of 400 rows, not 2,000
    assert grouped.ece_allowed > 1.5 * as_rows.ece_allowed
    with pytest.raises(ValueError, match="one id per row"):
        calibration_check(y, p, groups=leads[:10])
    with pytest.raises(ValueError, match="must not be missing"):
        calibration_check(y, p, groups=np.where(leads == 3, None, leads.astype(object)))
