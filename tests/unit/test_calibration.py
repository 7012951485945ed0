"""The calibrator gives the textbook formulas' numbers, to the bit, for one margin or many."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.calibration import Calibrator

margins = st.lists(st.floats(min_value=-800, max_value=800, allow_nan=False), min_size=1, max_size=40)


def textbook(method: str, params: dict[str, float], margin: np.ndarray) -> np.ndarray:
    z = params["a"] * margin + params["b"] if method == "sigmoid" else margin
    with np.errstate(over="ignore"):
        return np.clip(1.0 / (1.0 + np.exp(-z)), 1e-6, 1 - 1e-6)


@pytest.mark.parametrize(
    ("method", "params"), [("sigmoid", {"a": 1.37, "b": -0.42}), ("sigmoid", {"a": -0.9, "b": 2.1}), ("identity", {})]
)
@given(values=margins)
def test_logistic_calibration_equals_the_formula(method: str, params: dict[str, float], values: list[float]) -> None:
    margin = np.array(values)
    with np.errstate(over="ignore"):
        got = Calibrator(method=method, params=dict(params)).predict(margin)
    assert got.tolist() == textbook(method, params, margin).tolist()
    assert np.all((got > 0) & (got < 1))


def test_isotonic_calibration_interpolates_its_steps() -> None:
    calibrator = Calibrator(method="isotonic", params={"x": [-1.0, 0.0, 1.0], "y": [0.0, 0.5, 1.0]})
    assert calibrator.predict(np.array([-5.0, -0.5, 0.0, 0.25, 9.0])).tolist() == [1e-6, 0.25, 0.5, 0.625, 1 - 1e-6]


def test_the_calibrator_is_chosen_on_folds_that_keep_each_leads_moments_together() -> None:
    """Margins that are pure noise, five identical moments per lead: with a lead's moments in both folds,
    isotonic regression looks up the answers it was fitted on and wins; with whole leads per fold it is seen
    to overfit, and the sigmoid (nearly the base rate) is kept."""
    from training.pipeline import choose_calibrator

    rng = np.random.default_rng(0)
    leads = 2000
    margin = np.repeat(rng.normal(size=leads), 5)
    won = np.repeat((rng.random(leads) < 0.2).astype(int), 5)
    ids = np.repeat([f"L{i}" for i in range(leads)], 5)
    by_row, row_scores = choose_calibrator(margin, won, 42)
    by_lead, lead_scores = choose_calibrator(margin, won, 42, groups=ids)
    assert by_row.method == "isotonic" and row_scores["isotonic"] < row_scores["sigmoid"]
    assert by_lead.method == "sigmoid" and lead_scores["isotonic"] > lead_scores["sigmoid"]
