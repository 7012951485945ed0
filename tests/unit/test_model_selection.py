"""Model selection: candidates are ranked by log loss per scoring moment on the calibration window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss

from features.spec import FeatureSpec
from models.linear import LinearMargin
from training.pipeline import LOGISTIC_C, TrainConfig, select_model


def test_candidates_are_ranked_by_log_loss_per_moment_not_by_the_fits_per_lead_weights() -> None:
    rng = np.random.default_rng(3)
    spec = FeatureSpec(numeric_attributes=("a", "b"), use_touches=False)
    assert spec.feature_names == ["days_since_created", "attr_a", "attr_b"]

    def moments(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = np.c_[rng.uniform(0, 60, n), rng.normal(size=(n, 2))]
        y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 1] - 2)))).astype(np.int64)
        return X, y

    X, y = moments(3000)
    X_cal, y_cal = moments(800)
    weight = rng.uniform(0.1, 1.0, len(y))
    weight_cal = np.where(y_cal == 1, 0.05, 1.0)  # weights that follow the label, as a lead's moments do
    config = TrainConfig(data=Path("."), seed=5, num_boost_round=30, early_stopping_rounds=5)
    booster, linear, chosen = select_model(X, y, X_cal, y_cal, spec, config, weight, weight_cal)
    tried = {(t["kind"], t.get("C"), t.get("num_leaves")): t["calibration_log_loss"] for t in chosen["tried"]}
    for c in LOGISTIC_C:  # worked out again: the same fit, scored on every moment once
        refit = LinearMargin([False, False, False], C=c, seed=5).fit(X, y, weight)
        p = 1 / (1 + np.exp(-refit.margin(X_cal)))
        per_moment = log_loss(y_cal, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])
        weighted = log_loss(y_cal, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1], sample_weight=weight_cal)
        assert abs(per_moment - weighted) > 0.05  # the two rankings' figures differ here
        recorded = next(v for (kind, cc, _), v in tried.items() if kind == "logistic_regression" and cc == c)
        assert recorded == pytest.approx(per_moment)
    best = min(chosen["tried"], key=lambda t: t["calibration_log_loss"])
    assert chosen["chosen"]["kind"] == best["kind"] and "per scoring moment" in chosen["chosen_by"]
    assert (booster is None) == (best["kind"] == "logistic_regression") and (linear is None) != (booster is None)
