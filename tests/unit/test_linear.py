"""The logistic regression model selection may serve: its margin by hand, exact contributions, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_features, infer_spec
from models.calibration import Calibrator
from models.linear import LinearMargin
from models.scoring_model import ScoringModel


def tiny_matrix() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two features: a count (with a missing value) and a category code (0, 1 or missing)."""
    X = np.array(
        [[0, 0], [1, 0], [3, 1], [np.nan, 1], [7, np.nan], [2, 0], [0, 1], [5, 1]],
        dtype=np.float64,
    )
    y = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    w = np.array([1, 1, 1, 0.5, 0.5, 1, 1, 1])
    return X, y, w


def test_margin_is_the_intercept_plus_each_features_term_worked_out_by_hand() -> None:
    X, y, w = tiny_matrix()
    model = LinearMargin([False, True], C=1.0).fit(X, y, w)
    # The count's median over known values (0, 1, 3, 7, 2, 0, 5) is 2; log-scaled as sign(x) log1p(|x|).
    assert model.median_[0] == 2.0
    t = np.log1p(np.array([0, 1, 3, 2, 7, 2, 0, 5], dtype=float))
    mean = np.average(t, weights=w)
    sd = np.sqrt(np.average((t - mean) ** 2, weights=w))
    assert model.mean_[0] == pytest.approx(mean) and model.scale_[0] == pytest.approx(sd)
    row = np.array([[4.0, 1.0]])
    by_hand = model.intercept_ + model.coef_[0] * (np.log1p(4.0) - mean) / sd + model.category_coef_[1][1]
    assert model.margin(row)[0] == pytest.approx(by_hand)
    # A missing or never-seen category code adds nothing; a missing count is the median.
    unknown = np.array([[np.nan, np.nan], [np.nan, 9.0]])
    median_term = model.coef_[0] * (np.log1p(2.0) - mean) / sd
    assert model.margin(unknown) == pytest.approx([model.intercept_ + median_term] * 2)


def test_the_fit_follows_the_data() -> None:
    """Wins come with larger counts and with category 1: both weights are positive."""
    X, y, w = tiny_matrix()
    model = LinearMargin([False, True], C=10.0).fit(X, y, w)
    assert model.coef_[0] > 0
    assert model.category_coef_[1][1] > model.category_coef_[1][0]


def test_contributions_sum_to_the_margin_and_average_zero_over_training_rows() -> None:
    X, y, w = tiny_matrix()
    model = LinearMargin([False, True]).fit(X, y, w)
    contributions = model.contributions(X)
    assert contributions.shape == (len(X), 3)
    np.testing.assert_allclose(contributions.sum(axis=1), model.margin(X))
    np.testing.assert_allclose(np.average(contributions[:, :-1], axis=0, weights=w), 0.0, atol=1e-12)


def test_a_scoring_model_with_a_linear_margin_round_trips_through_save_and_load(tmp_path: Path) -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(40)],
            "created_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "industry": ["retail", "software"] * 20,
            "employees": np.arange(40) * 10.0,
        }
    )
    spec = infer_spec(leads, None)
    X = build_features(leads, None, pd.Timestamp("2025-02-01", tz="UTC"), spec).to_numpy(dtype=np.float32)
    y = (np.arange(40) % 3 == 0).astype(int)
    categorical = [n in spec.categorical_feature_names for n in spec.feature_names]
    linear = LinearMargin(categorical).fit(X, y)
    model = ScoringModel(
        spec=spec, booster=None, calibrator=Calibrator("sigmoid").fit(linear.margin(X), y), linear=linear
    )
    loaded = ScoringModel.load(model.save(tmp_path / "model"))
    assert loaded.booster is None and loaded.linear is not None
    assert not (tmp_path / "model" / "booster.txt").exists()
    np.testing.assert_array_equal(loaded.predict_proba(X[:3]), model.predict_proba(X[:3]))
    np.testing.assert_array_equal(loaded.contributions(X), model.contributions(X))
    assert len(loaded.explain(X[:2])) == 2
