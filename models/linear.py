"""A regularised logistic regression on the feature matrix, served like the booster: margins and exact
per-feature contributions, stored as plain numbers (no pickles).

Model selection (training) fits it next to LightGBM and keeps whichever has the lower log loss on the
calibration window: on small attribute-only data (a flat export, one example per lead) a linear model is
often the better one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class LinearMargin:
    """Logistic regression on the spec's features: log-scaled, standardised numbers and one-hot categories.

    Numbers: a missing value takes the training median, then ``sign(x) * log1p(|x|)`` (counts and days are
    heavy-tailed), then standardisation by the training (weighted) mean and standard deviation. Categories
    (the spec's integer codes) are one-hot; a missing or unknown code adds nothing. The margin is
    ``intercept + sum of the features' terms``; fitted by scikit-learn's ``LogisticRegression`` with an L2
    penalty of strength ``1 / C``.

    Contributions (:meth:`contributions`) are each feature's term minus its mean term over the training rows,
    and the bias is the intercept plus those means, so a row's contributions sum to its margin: the exact
    SHAP values of a linear model with independent features (Lundberg & Lee, "A Unified Approach to
    Interpreting Model Predictions", NeurIPS 2017, section 4.1 "Linear SHAP").
    """

    categorical: list[bool]  # per feature column: True for a category code
    C: float = 0.5
    seed: int = 0
    median_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coef_: np.ndarray = field(default_factory=lambda: np.zeros(0))  # numbers: one weight; categories: unused (0)
    category_coef_: dict[int, np.ndarray] = field(default_factory=dict)  # column -> weight per code
    intercept_: float = 0.0
    mean_term_: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per column, over the training rows

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LinearMargin:
        """Fit on ``X`` (rows x spec features, float, NaN = missing) and 0/1 labels; returns self."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        cat = np.asarray(self.categorical, dtype=bool)
        n_features = X.shape[1]
        self.median_ = np.zeros(n_features)
        self.mean_ = np.zeros(n_features)
        self.scale_ = np.ones(n_features)
        for k in map(int, np.flatnonzero(~cat)):
            known = ~np.isnan(X[:, k])
            self.median_[k] = float(np.median(X[known, k])) if known.any() else 0.0
            t = _signed_log1p(np.where(known, X[:, k], self.median_[k]))
            self.mean_[k] = float(np.average(t, weights=w))
            sd = float(np.sqrt(np.average((t - self.mean_[k]) ** 2, weights=w)))
            self.scale_[k] = sd if sd > 1e-12 else 1.0
        sizes = {c: self._codes_seen(X[:, c]) for c in map(int, np.flatnonzero(cat))}
        design = self._design(X, sizes)
        lr = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        lr.fit(design, y, sample_weight=w)
        weights = lr.coef_[0]
        self.intercept_ = float(lr.intercept_[0])
        self.coef_ = np.zeros(n_features)
        self.category_coef_ = {}
        at = 0
        for j in range(n_features):
            if self.categorical[j]:
                self.category_coef_[j] = weights[at : at + sizes[j]].copy()
                at += sizes[j]
            else:
                self.coef_[j] = float(weights[at])
                at += 1
        self.mean_term_ = np.average(self._terms(X), axis=0, weights=w)
        return self

    @staticmethod
    def _codes_seen(column: np.ndarray) -> int:
        known = column[~np.isnan(column)]
        return int(known.max()) + 1 if len(known) else 0

    def _numbers(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.median_, X)
        return (_signed_log1p(filled) - self.mean_) / self.scale_

    def _design(self, X: np.ndarray, sizes: dict[int, int]) -> np.ndarray:
        cat = np.asarray(self.categorical, dtype=bool)
        numbers = self._numbers(X)
        parts = []
        for j in range(X.shape[1]):
            if cat[j]:
                onehot = np.zeros((len(X), sizes[j]))
                codes = X[:, j]
                ok = ~np.isnan(codes) & (codes >= 0) & (codes < sizes[j])
                onehot[np.flatnonzero(ok), codes[ok].astype(int)] = 1.0
                parts.append(onehot)
            else:
                parts.append(numbers[:, j : j + 1])
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    # ---- prediction ------------------------------------------------------------------------
    def _terms(self, X: np.ndarray) -> np.ndarray:
        """Each feature's term of the margin, rows x features."""
        X = np.asarray(X, dtype=np.float64)
        terms = self._numbers(X) * self.coef_
        for j, weights in self.category_coef_.items():
            codes = X[:, j]
            ok = ~np.isnan(codes) & (codes >= 0) & (codes < len(weights))
            column = np.zeros(len(X))
            column[ok] = weights[codes[ok].astype(int)]
            terms[:, j] = column
        return terms

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw margins (log odds before calibration), one per row."""
        return self.intercept_ + self._terms(X).sum(axis=1)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the margin with the bias as the last column (LightGBM's
        ``pred_contrib`` layout); each row sums to its margin."""
        terms = self._terms(X) - self.mean_term_
        bias = np.full((len(terms), 1), self.intercept_ + float(self.mean_term_.sum()))
        return np.hstack([terms, bias])

    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "logistic_regression",
            "C": self.C,
            "categorical": list(map(bool, self.categorical)),
            "median": self.median_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "category_coef": {str(j): w.tolist() for j, w in self.category_coef_.items()},
            "intercept": self.intercept_,
            "mean_term": self.mean_term_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearMargin:
        return cls(
            categorical=list(data["categorical"]),
            C=float(data["C"]),
            median_=np.asarray(data["median"], dtype=np.float64),
            mean_=np.asarray(data["mean"], dtype=np.float64),
            scale_=np.asarray(data["scale"], dtype=np.float64),
            coef_=np.asarray(data["coef"], dtype=np.float64),
            category_coef_={int(j): np.asarray(w, dtype=np.float64) for j, w in data["category_coef"].items()},
            intercept_=float(data["intercept"]),
            mean_term_=np.asarray(data["mean_term"], dtype=np.float64),
        )
