"""How the Dask engine's training run samples a train window past its cap, worked out by hand."""

from __future__ import annotations

import pytest

from training.dask_training import keep_shares


def test_a_train_window_under_the_cap_is_kept_whole() -> None:
    assert keep_shares(100, 900, 1_000) == (1.0, 1.0)


def test_rare_positives_are_all_kept_and_negatives_fill_the_rest() -> None:
    keep_positive, keep_negative = keep_shares(100, 1_900, 1_000)
    assert keep_positive == 1.0 and keep_negative == pytest.approx(900 / 1_900)  # 100 + 0.4737 * 1900 = 1000


def test_common_positives_take_half_the_cap_each_class() -> None:
    assert keep_shares(800, 5_000, 1_000) == pytest.approx((500 / 800, 500 / 5_000))
    assert keep_shares(800, 300, 1_000) == pytest.approx(((1_000 - 300) / 800, 1.0))  # negatives short of half


def test_no_share_is_under_one_percent() -> None:
    assert keep_shares(10, 1_000_000_000, 1_000) == (1.0, 0.01)


def test_a_window_of_consecutive_rows_is_a_read_only_view_and_any_other_a_copy() -> None:
    import numpy as np

    from training.pipeline import window_rows

    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    view = window_rows(X, np.arange(3, 7))
    assert np.shares_memory(view, X) and view.tolist() == X[3:7].tolist()
    with pytest.raises(ValueError):
        view[0, 0] = -1.0  # nothing fitted on a window can change the matrix
    assert X[3, 0] == 6.0
    for rows in (np.array([3, 5, 6]), np.array([4, 3]), np.array([2, 2, 3])):
        copy = window_rows(X, rows)
        assert not np.shares_memory(copy, X) and copy.tolist() == X[rows].tolist()
    assert window_rows(X, np.array([], dtype=np.int64)).shape == (0, 2)


def test_rows_to_score_are_typed_by_the_models_reading_not_by_what_a_partition_shows(tmp_path) -> None:
    """A column the model reads as categories ("true", "false", "5") can read as numbers in a partition (or
    a file to score) that lacks the column's other values: "true" then became 1.0, the unknown category "1",
    and the Dask engine's scores differed from the local engine's. Typed by the spec, the rows read as the
    API reads the same values."""
    import numpy as np
    import pandas as pd

    from features import build_features
    from features.spec import FeatureSpec
    from training.dask_engine import validated_partition
    from training.data import load_crm_data

    spec = FeatureSpec(categorical_attributes={"flag": ("true", "false", "5")}, use_touches=False)
    assert spec.attribute_types == {"flag": False}
    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c"],
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            "flag": ["true", "false", "5"],
        }
    )
    outcomes = pd.DataFrame(
        {"lead_id": ["a"], "outcome": ["lost"], "closed_at": [pd.Timestamp("2026-02-01", tz="UTC")]}
    )
    now = pd.Timestamp("2026-03-01", tz="UTC")
    alone, _ = validated_partition(leads, None, outcomes, now)
    assert list(alone.leads["flag"]) == [1.0, 0.0, 5.0]  # what the partition alone shows
    typed, _ = validated_partition(leads, None, outcomes, now, attribute_types=spec.attribute_types)
    assert list(typed.leads["flag"]) == ["true", "false", "5"]
    as_api = build_features(leads, None, now, spec)  # raw values, as the API reads them
    np.testing.assert_array_equal(build_features(typed.leads, None, now, spec).to_numpy(), as_api.to_numpy())
    assert not np.array_equal(build_features(alone.leads, None, now, spec).to_numpy(), as_api.to_numpy())
    # the local engine's `leadscore score` loads its file the same way
    (tmp_path / "d").mkdir()
    leads.to_csv(tmp_path / "d" / "leads.csv", index=False)
    outcomes.to_csv(tmp_path / "d" / "outcomes.csv", index=False)
    loaded = load_crm_data(tmp_path / "d", attribute_types=spec.attribute_types, now=now)
    assert list(loaded.leads["flag"]) == ["true", "false", "5"]
    assert load_crm_data(tmp_path / "d", now=now).leads["flag"].dtype == np.float64


def test_a_partition_keeps_the_first_row_in_the_files_of_a_repeated_id() -> None:
    """The shuffle by lead may put a partition's rows in any order; each table carries its rows' place in
    the files (``ORDER``), so "first row kept" keeps the first in the files, as the local engine does: here
    the repeated lead and outcome arrive before the rows they repeat."""
    import pandas as pd

    from training.dask_engine import ORDER, validated_partition

    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b", "a"],
            "created_at": pd.to_datetime(["2026-01-05", "2026-01-02", "2026-01-01"], utc=True),
            "industry": ["resent", "retail", "software"],
            ORDER: [7, 3, 1],  # "a" as software came first in the files
        }
    )
    closed = pd.Timestamp("2026-02-01", tz="UTC")
    outcomes = pd.DataFrame(
        {"lead_id": ["a", "a"], "outcome": ["lost", "won"], "closed_at": [closed, closed], ORDER: [9, 2]}
    )
    now = pd.Timestamp("2026-03-01", tz="UTC")
    data, report = validated_partition(leads, None, outcomes, now)
    assert data.leads.set_index("lead_id")["industry"].to_dict() == {"a": "software", "b": "retail"}
    assert ORDER not in data.leads.columns and ORDER not in data.outcomes.columns
    assert data.outcomes["outcome"].tolist() == ["won"] and report.dropped == 2
    kept, _ = validated_partition(leads, None, outcomes, now, typed=False, keep_order=True)
    assert kept.leads[ORDER].tolist() == [1, 3]  # the training path keeps the order for the local row order
