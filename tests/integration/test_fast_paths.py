"""The scoring server's fast paths give exactly what the general paths give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import build_features_from_records
from models.scoring_model import FAST_ROWS
from models.trees import TreeArrays
from tests.conftest import TrainedWorld
from tests.factories import records_from_frames
from training.data import load_crm_data


@pytest.fixture(scope="module")
def feature_rows(trained: TrainedWorld) -> np.ndarray:
    """Float32 feature rows of 400 real leads, with holes and extremes the booster must route the same way."""
    data = load_crm_data(trained.data_dir)
    as_of = (data.end_time - pd.Timedelta(days=20)).to_pydatetime()
    leads = data.leads[data.leads.created_at <= as_of].sample(400, random_state=3)
    X = build_features_from_records(records_from_frames(leads, data.touchpoints), as_of, trained.result.model.spec)
    X[::5, :7] = np.nan
    X[1::7, -3:] = np.nan
    X[2::11, 3] = np.float32(1e30)
    X[3::13, 4] = np.float32(-1e30)
    return np.ascontiguousarray(X, dtype=np.float32)


def test_the_tree_walk_gives_the_booster_own_margins(trained: TrainedWorld, feature_rows: np.ndarray) -> None:
    booster = trained.result.model.booster
    expected = booster.predict(feature_rows.astype(np.float64), raw_score=True)
    np.testing.assert_array_equal(TreeArrays.from_booster(booster).margins(feature_rows), expected)


def test_margin_is_the_same_for_a_few_rows_and_for_many(trained: TrainedWorld, feature_rows: np.ndarray) -> None:
    model = trained.result.model
    whole = model.margin(feature_rows)  # many rows: Booster.predict
    pieces = np.concatenate(
        [model.margin(feature_rows[i : i + FAST_ROWS]) for i in range(0, len(feature_rows), FAST_ROWS)]
    )
    np.testing.assert_array_equal(pieces, whole)
    as_float64 = np.concatenate([model.margin(feature_rows[i : i + 2].astype(np.float64)) for i in range(0, 40, 2)])
    np.testing.assert_array_equal(as_float64, whole[:40])


def test_the_tree_walk_refuses_rows_it_cannot_read(trained: TrainedWorld, feature_rows: np.ndarray) -> None:
    trees = TreeArrays.from_booster(trained.result.model.booster)
    for bad in (feature_rows[:2, :-1].copy(), feature_rows[0]):
        with pytest.raises(ValueError, match="columns"):
            trees.margins(bad)


def test_the_tree_walk_reads_any_memory_layout_and_dtype(trained: TrainedWorld, feature_rows: np.ndarray) -> None:
    trees = TreeArrays.from_booster(trained.result.model.booster)
    expected = trees.margins(feature_rows[:40])
    np.testing.assert_array_equal(trees.margins(np.asfortranarray(feature_rows[:40])), expected)
    np.testing.assert_array_equal(trees.margins(feature_rows[:40].astype(np.float64)), expected)
    np.testing.assert_array_equal(
        trees.margins(feature_rows[:80:2]), trees.margins(np.ascontiguousarray(feature_rows[:80:2]))
    )
