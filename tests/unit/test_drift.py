"""PSI and its bins, worked out by hand on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.drift import Bins, DriftReference, drift_reference, level, psi


def test_psi_is_the_sum_of_share_differences_times_their_log_ratio() -> None:
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)  # 0.2747
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(by_hand)
    assert psi([50, 50], [1, 3]) == pytest.approx(by_hand)  # counts are normalised
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0)


def test_an_empty_bin_gets_the_floor_instead_of_an_infinite_index() -> None:
    e = np.array([1.0, 1e-4]) / 1.0001  # the reference's empty bin floored, then renormalised
    a = np.array([0.5, 0.5])
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        psi([0.0, 0.0], [1.0, 1.0])


def test_levels_follow_the_usual_rule_of_thumb() -> None:
    assert [level(x) for x in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == [
        "stable",
        "stable",
        "warning",
        "warning",
        "drift",
        "drift",
    ]


def test_numeric_bins_are_the_test_deciles_plus_a_bin_for_missing_values() -> None:
    bins = Bins.fit(np.array([*range(1, 11), np.nan, np.nan], dtype=float), "numeric")
    # deciles 1.9, 2.8 ... 9.1, each moved halfway down to the value below it (1, 2 ... 9)
    assert bins.edges == pytest.approx((1.45, 2.4, 3.35, 4.3, 5.25, 6.2, 7.15, 8.1, 9.05))
    assert bins.size == 11
    assert bins.index(np.array([0.0, 1.0, 1.9, 9.1, 50.0, np.nan, np.inf])).tolist() == [0, 0, 1, 9, 9, 10, 10]
    assert bins.shares == pytest.approx([1 / 12] * 10 + [2 / 12])


def test_equal_values_merge_bins() -> None:
    bins = Bins.fit(np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 5], dtype=float), "numeric")
    # quantiles 0 (seven times), 0.2 and 1.4: one bin each; 0.2 and 1.4 move halfway down to 0 and 1
    assert bins.edges == pytest.approx((0.0, 0.1, 1.2))
    assert bins.shares == pytest.approx([0.0, 0.8, 0.1, 0.1, 0.0])  # below 0, [0, 0.1), [0.1, 1.2), 1.2+, missing


def test_a_value_a_hair_below_a_point_mass_falls_in_its_bin() -> None:
    """Many test leads at exactly 1.0 (a decayed engagement at the creation touch): a lead scored minutes later
    (0.99998) counts in 1.0's bin, not in the bin of the values below, which would make a drift of nothing."""
    bins = Bins.fit(np.array([0.2, 0.4, *[1.0] * 6, 3.0, 4.0]), "numeric")
    # distinct deciles 0.38, 0.88, 1.0, 1.4, 3.1, moved halfway down to 0.2, 0.4, 0.4, 1.0, 3.0
    assert bins.edges == pytest.approx((0.29, 0.64, 0.7, 1.2, 3.05))
    assert bins.index(np.array([1.0, 0.99998, 0.5])).tolist() == [3, 3, 1]
    assert bins.shares == pytest.approx([0.1, 0.1, 0.0, 0.6, 0.1, 0.1, 0.0])


def test_categorical_bins_are_the_codes_seen_plus_one_for_missing_or_unseen() -> None:
    bins = Bins.fit(np.array([0, 0, 2, 2, 2, np.nan]), "categorical", weight=np.array([1, 1, 1, 1, 1, 5.0]))
    assert bins.edges == (0.0, 2.0) and bins.shares == pytest.approx([0.2, 0.3, 0.5])
    assert bins.index(np.array([2.0, 0.0, 1.0, 7.0, np.nan])).tolist() == [1, 0, 2, 2, 2]


def test_a_reference_survives_the_model_meta_and_covers_the_score_and_every_feature() -> None:
    X = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, np.nan]])
    ref = drift_reference(np.array([0.1, 0.2, 0.3]), X, ["n_visits", "industry"], ["industry"])
    again = DriftReference.from_dict(ref.to_dict())
    assert again == ref and [name for name, _ in ref.columns()] == ["score", "n_visits", "industry"]
    assert ref.features["industry"].kind == "categorical" and ref.rows == 3
    assert DriftReference.from_dict(None) is None


def reference_of_two_bins() -> DriftReference:
    half = Bins("numeric", (0.5,), (0.5, 0.5, 0.0))  # below 0.5, 0.5 and above, missing
    return DriftReference(score=half, features={"visits": half, "pages": half}, rows=100)


def test_too_few_answers_give_no_verdict() -> None:
    from models.drift import compare

    report = compare(reference_of_two_bins(), {"score": np.array([10, 90, 0])}, min_scores=500)
    assert report.status == "not enough data" and report.scores == 100 and report.score is None


def test_the_status_is_the_worst_level_of_the_score_and_the_features() -> None:
    from models.drift import compare

    counts = {"score": np.array([250, 250, 0]), "visits": np.array([100, 400, 0]), "pages": np.array([240, 260, 0])}
    report = compare(reference_of_two_bins(), counts, min_scores=500)
    assert report.score is not None and report.score.psi == pytest.approx(psi([0.5, 0.5, 0.0], [250, 250, 0]))
    assert report.score.level == "stable"
    visits = (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.8 - 0.5) * math.log(0.8 / 0.5)  # 0.416: the missing bins
    assert [f.column for f in report.features] == ["visits", "pages"]  # worst first
    assert report.features[0].psi == pytest.approx(visits, abs=1e-3) and report.features[0].level == "drift"
    assert report.status == "drift" and "visits" in report.explanation


def test_one_lead_scored_many_times_is_not_a_population() -> None:
    from models.drift import compare

    counts = {"score": np.array([0, 500, 0]), "visits": np.array([0, 500, 0]), "pages": np.array([0, 500, 0])}
    report = compare(reference_of_two_bins(), counts, min_scores=100, leads=1, min_leads=50)
    assert report.status == "not enough data" and "500 answers of 1 leads" in report.explanation
    assert compare(reference_of_two_bins(), counts, min_scores=100, leads=50, min_leads=50).status == "drift"


def test_the_on_arrival_reference_is_each_test_lead_at_its_creation_in_the_same_bins() -> None:
    # four test moments of two leads; rows 0 and 2 are their creation moments
    X = np.array([[0.0], [5.0], [0.0], [9.0]])
    ref = drift_reference(np.array([0.1, 0.2, 0.3, 0.9]), X, ["n_visits"], [], arrival=np.array([1, 0, 1, 0], bool))
    assert ref.arrival_leads == 2 and DriftReference.from_dict(ref.to_dict()) == ref
    # the same bins as all moments: the score's deciles of 0.1, 0.2, 0.3, 0.9 cut between 0.1 and 0.2, ...
    assert ref.arrival is not None and len(ref.arrival["score"]) == ref.score.size
    by_hand = ref.score.counts(np.array([0.1, 0.3])) / 2
    assert ref.arrival["score"] == pytest.approx(tuple(by_hand)) and sum(ref.arrival["score"]) == pytest.approx(1.0)
    assert ref.arrival["n_visits"][ref.features["n_visits"].index(np.array([0.0]))[0]] == 1.0  # both at 0 visits
    assert drift_reference(np.array([0.1]), X[:1], ["n_visits"], []).arrival is None  # no mask: none kept


def test_the_verdict_on_arrival_compares_with_the_creation_shares() -> None:
    from models.drift import compare

    ref = DriftReference(
        score=Bins("numeric", (0.5,), (0.5, 0.5, 0.0)), features={}, rows=100, arrival={"score": (0.8, 0.2, 0.0)}
    )
    same = compare(ref, {"score": np.array([160, 40, 0])}, min_scores=200, on_arrival=True)
    assert same.score is not None and same.score.psi == pytest.approx(0.0, abs=1e-9) and same.status == "stable"
    assert same.explanation.startswith("score PSI 0.000 (stable) over 200 leads scored on arrival")
    moved = compare(ref, {"score": np.array([100, 100, 0])}, min_scores=200, on_arrival=True)
    by_hand = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)  # 0.416
    assert moved.score is not None and moved.score.psi == pytest.approx(by_hand, abs=1e-3) and moved.status == "drift"
    # against the all-moments shares (0.5, 0.5) the same counts are stable: which shares are used matters
    assert compare(ref, {"score": np.array([100, 100, 0])}, min_scores=200).status == "stable"
    few = compare(ref, {"score": np.array([60, 40, 0])}, min_scores=200, on_arrival=True)
    assert few.status == "not enough data" and "100 leads scored on arrival" in few.explanation
    with pytest.raises(ValueError, match="on-arrival"):
        compare(reference_of_two_bins(), {"score": np.array([100, 100, 0])}, min_scores=1, on_arrival=True)


def test_features_left_out_are_not_compared() -> None:
    from models.drift import compare

    counts = {"score": np.array([250, 250, 0]), "visits": np.array([100, 400, 0]), "pages": np.array([240, 260, 0])}
    report = compare(reference_of_two_bins(), counts, min_scores=500, leave_out=frozenset({"visits"}))
    assert [f.column for f in report.features] == ["pages"] and report.status == "stable"


def test_a_stale_psi_gauge_is_set_to_minus_one_when_the_next_report_has_no_figure() -> None:
    from types import SimpleNamespace

    from serving.metrics import Metrics
    from serving.schemas import FeatureDriftOut

    metrics = Metrics()
    drifted = SimpleNamespace(
        status="drift", score_psi=0.4, features=[FeatureDriftOut(feature="visits", psi=0.3, level="drift")]
    )
    metrics.set_drift(drifted)
    assert metrics.registry.get_sample_value("leadscore_drift_psi", {"column": "visits"}) == 0.3
    metrics.set_drift(SimpleNamespace(status="not enough data", score_psi=None, features=[]))
    assert metrics.registry.get_sample_value("leadscore_drift_psi", {"column": "score"}) == -1
    assert metrics.registry.get_sample_value("leadscore_drift_psi", {"column": "visits"}) == -1
    assert metrics.registry.get_sample_value("leadscore_drift_status", {}) == -1
