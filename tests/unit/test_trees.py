"""The walk of the booster's trees gives LightGBM's own margins, however the splits treat missing values."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from models.trees import TreeArrays


def data(n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    X[:, 3] = rng.integers(0, 40, n)  # a category with many values (many-vs-many splits)
    X[:, 4] = rng.integers(0, 5, n)  # one with few (one-vs-rest)
    X[rng.random(n) < 0.1, 0] = np.nan
    X[rng.random(n) < 0.2, 2] = 0.0
    X[rng.random(n) < 0.1, 3] = np.nan
    y = (X[:, 1] + (X[:, 3] % 3 == 2) + (X[:, 4] == 1) + np.nan_to_num(X[:, 0]) + rng.normal(size=n) > 0.5).astype(int)
    probe = X[:300].copy()
    probe[:50, 3] = -1  # a negative category code
    probe[50:100, 3] = 99  # a category never seen
    probe[100:150, 4] = np.nan
    probe[150:200, 1] = np.nan
    probe[200:250, 2] = np.nan
    probe[250:260, 0] = 0.0
    probe[260:270, 2] = 1e-40  # below LightGBM's zero threshold
    return X, y, probe


@pytest.mark.parametrize(
    "params",
    [{"max_cat_to_onehot": 4}, {"max_cat_to_onehot": 64}, {"zero_as_missing": True}, {"use_missing": False}],
)
def test_the_walk_gives_booster_predict_raw_scores_exactly(params: dict) -> None:
    X, y, probe = data()
    train_set = lgb.Dataset(X, y, categorical_feature=[3, 4])
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 1, **params}, train_set, 60)
    trees = TreeArrays.from_booster(booster)
    for rows in (probe, probe.astype(np.float32)):
        np.testing.assert_array_equal(trees.margins(rows), booster.predict(rows, raw_score=True))


def test_the_walk_stops_at_the_best_iteration_as_predict_does() -> None:
    X, y, probe = data()
    booster = lgb.train({"objective": "binary", "verbosity": -1, "seed": 1}, lgb.Dataset(X, y), 30)
    booster.best_iteration = 7  # as early stopping leaves it
    walked = TreeArrays.from_booster(booster).margins(probe)
    np.testing.assert_array_equal(walked, booster.predict(probe, raw_score=True))
    assert not np.array_equal(walked, booster.predict(probe, raw_score=True, num_iteration=30))
