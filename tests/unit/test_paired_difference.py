"""The model against the creation-time regression at first score: paired differences with intervals,
worked out by hand on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluate import paired_auc_difference, paired_log_loss_difference
from training.pipeline import compare_at_first_score


def psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def test_the_auc_difference_and_its_delong_interval_match_the_pairs_counted_by_hand() -> None:
    # 3 won, 4 not won; model a has a tie with a negative, model b one inversion
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.6, 0.4, 0.4, 0.3, 0.2, 0.1])
    b = np.array([0.8, 0.3, 0.7, 0.5, 0.2, 0.6, 0.1])
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    # placements: V10[i] = share of negatives positive i outranks, V01[j] = share of positives outranking j
    v10 = {k: np.array([np.mean([psi(s[i], s[j]) for j in neg]) for i in pos]) for k, s in (("a", a), ("b", b))}
    v01 = {k: np.array([np.mean([psi(s[i], s[j]) for i in pos]) for j in neg]) for k, s in (("a", a), ("b", b))}
    # a: positives outrank 4, 4, 3.5 (a tie) of 4 negatives -> AUC 11.5 / 12; b: 4, 2, 4 -> 10 / 12
    assert v10["a"].mean() == pytest.approx(11.5 / 12) and v10["b"].mean() == pytest.approx(10 / 12)
    variance = np.var(v10["a"] - v10["b"], ddof=1) / 3 + np.var(v01["a"] - v01["b"], ddof=1) / 4
    got = paired_auc_difference(y, a, b)
    assert (got.a, got.b) == pytest.approx((roc_auc_score(y, a), roc_auc_score(y, b)))
    assert got.difference == pytest.approx(11.5 / 12 - 10 / 12)
    half = 1.959963985 * math.sqrt(variance)
    assert (got.low, got.high) == pytest.approx((got.difference - half, got.difference + half), rel=1e-6)
    # the same model twice: no difference, and no width
    same = paired_auc_difference(y, a, a)
    assert (same.difference, same.low, same.high) == pytest.approx((0.0, 0.0, 0.0))


def test_the_log_loss_difference_is_a_paired_mean_with_its_interval() -> None:
    y = np.array([1, 0, 0, 1])
    a = np.array([0.8, 0.2, 0.4, 0.5])
    b = np.array([0.5, 0.5, 0.5, 0.5])
    per_row = np.array(
        [-math.log(0.8) + math.log(0.5), -math.log(0.8) + math.log(0.5), -math.log(0.6) + math.log(0.5), 0.0]
    )
    got = paired_log_loss_difference(y, a, b)
    half = 1.959963985 * per_row.std(ddof=1) / 2
    assert got.difference == pytest.approx(per_row.mean())
    assert (got.low, got.high) == pytest.approx((per_row.mean() - half, per_row.mean() + half), rel=1e-6)
    assert got.b == pytest.approx(math.log(2))  # 0.5 everywhere: ln 2 nats per lead


def test_the_first_score_comparison_is_recorded_and_said_in_words() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    model = np.array([0.9, 0.6, 0.4, 0.4, 0.3, 0.2, 0.1])
    creation = np.array([0.8, 0.3, 0.7, 0.5, 0.2, 0.6, 0.1])
    metrics: dict[str, float] = {}
    notes = compare_at_first_score(y, model, creation, metrics)
    key = "test_first_score_roc_auc_difference_vs_creation_logreg"
    assert metrics[key] == pytest.approx(11.5 / 12 - 10 / 12)
    assert metrics[f"{key}_low"] < metrics[key] < metrics[f"{key}_high"]
    assert "test_first_score_log_loss_difference_vs_creation_logreg_high" in metrics
    assert notes[0].startswith("at first score (7 test leads), against the creation-time logistic regression: ")
    assert "ROC AUC 0.9583 against 0.8333: +0.1250 (95% interval " in notes[0]
    # one won lead: no interval can be had, and nothing is claimed
    assert compare_at_first_score(np.array([1, 0, 0]), model[:3], creation[:3], {}) == []


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least two rows of each class"):
        paired_auc_difference(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="one value per row"):
        paired_auc_difference(np.array([1, 0]), np.array([0.1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        paired_log_loss_difference(np.array([2, 0]), np.array([0.1, 0.2]), np.array([0.1, 0.2]))
