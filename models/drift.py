"""Drift: how far the scores and features served lie from the model's test window (PSI).

The bins are fixed at training, from the test window (:func:`drift_reference`, stored in the model's meta):
for the score (the probability) and every numeric feature, the deciles of its test values (equal values
merge bins; each edge moved halfway down to the test value below it) plus one bin for missing values;
for every categorical feature, one bin per category code plus one for missing or unseen values. Two sets
of shares over those bins:

* **on arrival** (the verdict): each test lead once, at its creation moment. Serving counts each lead's first
  answer given within ``ARRIVAL_SECONDS`` of its creation (a CRM scoring leads as they arrive). Both sides
  are one row per lead at (nearly) the same age, so the comparison does not depend on when or how often the
  CRM asks afterwards. Only the score and the lead attributes are compared (serving/monitoring.py): the
  touch features move within the first hour with the clock alone (days since a touch, a decayed engagement)
  or with the touches of a lead's first minutes (counts), with no change in the leads coming in.
* **all answers** (for reading, not for the verdict): every test scoring moment counts one, as every answer
  served does. Features that count time (days since the last touch, touches in the last 7 days) and so the
  score depend on the CRM's schedule: a CRM that scores weekly, or at every touch, was measured at a score
  PSI of 0.45-0.52 against this reference on the test window's own leads.

Serving counts the answers in the same bins, per day (serving/drift_store.py), and compares.

PSI (population stability index; Siddiqi (2006), "Credit Risk Scorecards", Wiley, ch. 8; Yurdakul (2018),
"Statistical properties of population stability index", Western Michigan University) over bins i with
reference shares e_i and served shares a_i:

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i) = KL(a || e) + KL(e || a)

computed as that symmetrised Kullback-Leibler divergence with ``scipy.special.rel_entr``. Empty bins get
the share ``floor`` (1e-4) before both sides are renormalised, so that one bin no one falls in does not make
the index infinite. Levels, as in that literature: under 0.1 stable, 0.1 to 0.25 a warning (a moderate
shift), 0.25 or more drift (a major shift).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WARNING_PSI = 0.1
DRIFT_PSI = 0.25
FLOOR = 1e-4
QUANTILES = np.linspace(0.1, 0.9, 9)
SCORE = "score"  # the name the score's bins go by, next to the features'
ARRIVAL_SECONDS = 3600  # an answer given this soon after the lead's creation is its answer "on arrival"
# The on-arrival verdict compares the score and the features of these kinds only (features/spec.py
# FeatureInfo.kind: the lead attributes): every touch feature moves within the first hour with the clock alone
# (days since a touch, the decayed engagement) or with the touches a lead gets in its first minutes (counts,
# velocity), so a lead scored at 40 minutes differs from the same lead at its creation with nothing changed in
# the leads coming in.
VERDICT_KINDS = ("attribute",)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, floor: float = FLOOR) -> float:
    """PSI between two distributions over the same bins, given as shares or counts (each is normalised).

    Raises:
        ValueError: the two have different lengths, a value is negative, or one side is all zero.
    """
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"the reference has {e.size} bins and the served distribution {a.size}")
    if (e < 0).any() or (a < 0).any() or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("bin counts must be non-negative, with at least one on each side")
    from scipy.special import rel_entr  # (SciPy loads in a few hundred ms: only when a PSI is computed)

    e, a = np.maximum(e / e.sum(), floor), np.maximum(a / a.sum(), floor)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def level(value: float) -> str:
    """``stable``, ``warning`` or ``drift`` for a PSI value (levels in the module docstring)."""
    return "drift" if value >= DRIFT_PSI else "warning" if value >= WARNING_PSI else "stable"


@dataclass(frozen=True)
class Bins:
    """How one column's values fall into bins, and the reference's share of each bin.

    ``kind`` numeric: bins ``(-inf, e_0), [e_0, e_1) ... [e_k, inf)`` then one for missing values;
    ``kind`` categorical: one per code of ``codes`` then one for missing or unseen values.
    """

    kind: str
    edges: tuple[float, ...]  # numeric: the inner edges; categorical: the codes
    shares: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.edges) + (2 if self.kind == "numeric" else 1)

    def index(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value (int64; missing values in the last bin)."""
        v = np.asarray(values, dtype=np.float64)
        missing = ~np.isfinite(v)
        filled = np.where(missing, 0.0, v)
        edges = np.asarray(self.edges, dtype=np.float64)
        if self.kind == "numeric":
            out = np.searchsorted(edges, filled, side="right")
        else:  # the code's position among the codes, or the last bin for a code not among them
            pos = np.searchsorted(edges, filled)
            found = (
                (pos < len(edges)) & (edges[np.minimum(pos, max(len(edges) - 1, 0))] == filled) if len(edges) else False
            )
            out = np.where(found, pos, len(edges))
        return np.where(missing, self.size - 1, out).astype(np.int64)

    def counts(self, values: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(self.index(values), weights=weight, minlength=self.size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bins:
        return cls(str(data["kind"]), tuple(float(x) for x in data["edges"]), tuple(float(x) for x in data["shares"]))

    @classmethod
    def fit(cls, values: np.ndarray, kind: str, weight: np.ndarray | None = None) -> Bins:
        """Bins of a column from its test-window values (deciles, or the codes seen), with their shares."""
        v = np.asarray(values, dtype=np.float64)
        present = v[np.isfinite(v)]
        if kind == "numeric" and present.size:
            # deciles, each moved down to halfway from the reference value below it: the reference's counts
            # are the same, and a served value a hair below a point mass (an engagement of 0.99998 where the
            # reference has many leads at exactly 1.0, as a lead scored minutes after its creation touch has)
            # falls in the point mass's bin, not in the bin under it
            quantiles = np.unique(np.quantile(present, QUANTILES))
            ordered = np.unique(present)
            below = np.searchsorted(ordered, quantiles, side="left") - 1
            lower = ordered[np.maximum(below, 0)]
            edges = tuple(np.unique(np.where(below >= 0, (lower + quantiles) / 2, quantiles)).round(10).tolist())
        elif kind == "numeric":
            edges = ()
        else:
            edges = tuple(np.unique(present).tolist())
        empty = cls(kind, edges, ())
        counts = empty.counts(v, weight)
        total = counts.sum()
        shares = counts / total if total > 0 else counts
        return cls(kind, edges, tuple(np.round(shares, 10).tolist()))


@dataclass(frozen=True)
class DriftReference:
    """The bins of the score and of every feature, fixed at training from the test window."""

    score: Bins
    features: dict[str, Bins]
    rows: int  # test-window scoring moments the shares come from
    unseen_touch_share: float | None = None  # share of the test window's touches of a type not in the spec
    # on arrival: per column (score and features), the shares of the test leads at their creation moment, in
    # the same bins (None: a model trained before they were kept); ``arrival_leads`` leads
    arrival: dict[str, tuple[float, ...]] | None = None
    arrival_leads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score.to_dict(),
            "features": {k: b.to_dict() for k, b in self.features.items()},
            "rows": self.rows,
            "unseen_touch_share": self.unseen_touch_share,
            "arrival": None if self.arrival is None else {k: list(v) for k, v in self.arrival.items()},
            "arrival_leads": self.arrival_leads,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DriftReference | None:
        """The reference stored in a model's meta, or None (a model trained before references existed)."""
        if not data:
            return None
        return cls(
            Bins.from_dict(data["score"]),
            {k: Bins.from_dict(v) for k, v in data["features"].items()},
            int(data["rows"]),
            data.get("unseen_touch_share"),
            None
            if data.get("arrival") is None
            else {k: tuple(float(x) for x in v) for k, v in data["arrival"].items()},
            int(data.get("arrival_leads") or 0),
        )

    def columns(self) -> list[tuple[str, Bins]]:
        """The score, then the features in model order."""
        return [(SCORE, self.score), *self.features.items()]


def drift_reference(
    probabilities: np.ndarray,
    X: np.ndarray,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    weight: np.ndarray | None = None,
    arrival: np.ndarray | None = None,
) -> DriftReference:
    """The reference of a model: bins of its test-window probabilities and of each feature column of ``X``
    (rows: test scoring moments, weighted by ``weight``, e.g. 1 / moments of the lead, so each lead weighs
    one); ``categorical`` names the columns holding category codes. ``arrival``: a boolean mask of the rows
    that are a lead's creation moment (one per lead): their shares in the same bins are the on-arrival
    reference."""
    cats = set(categorical)
    names = list(feature_names)
    touch_share = None
    if "n_touches_all" in names and "n_other_all" in names:
        w = np.ones(len(X)) if weight is None else np.asarray(weight, dtype=np.float64)
        touches = float(np.nansum(X[:, names.index("n_touches_all")] * w))
        other = float(np.nansum(X[:, names.index("n_other_all")] * w))
        touch_share = other / touches if touches > 0 else 0.0
    score = Bins.fit(probabilities, "numeric", weight)
    features = {
        name: Bins.fit(X[:, j], "categorical" if name in cats else "numeric", weight)
        for j, name in enumerate(feature_names)
    }
    shares = None
    if arrival is not None and np.asarray(arrival).any():
        mask = np.asarray(arrival, dtype=bool)
        columns = [(SCORE, score, probabilities), *((n, features[n], X[:, j]) for j, n in enumerate(names))]
        shares = {}
        for name, bins, values in columns:
            counts = bins.counts(np.asarray(values)[mask])
            shares[name] = tuple(np.round(counts / counts.sum(), 10).tolist())
    return DriftReference(
        score=score,
        features=features,
        rows=len(probabilities),
        unseen_touch_share=touch_share,
        arrival=shares,
        arrival_leads=int(np.asarray(arrival, dtype=bool).sum()) if shares is not None else 0,
    )


@dataclass(frozen=True)
class ColumnDrift:
    """The PSI of one column (the score or a feature) over the scores counted."""

    column: str
    psi: float
    level: str  # stable, warning, drift


@dataclass(frozen=True)
class DriftReport:
    """Served against the test window (see :func:`compare`)."""

    status: str  # not enough data, stable, warning, drift
    scores: int  # answers counted
    min_scores: int
    score: ColumnDrift | None
    features: list[ColumnDrift]  # worst first
    explanation: str


def compare(
    reference: DriftReference,
    counts: dict[str, np.ndarray],
    min_scores: int,
    leads: int = 0,
    min_leads: int = 0,
    on_arrival: bool = False,
    leave_out: frozenset[str] = frozenset(),
) -> DriftReport:
    """PSI of the score and of every feature between the reference and the served counts.

    Args:
        reference: the model's bins and reference shares.
        counts: per column (``score`` and feature names), the answers counted in each of its bins.
        on_arrival: compare with the on-arrival shares (``counts`` are then leads' answers on arrival, one
            per lead; ``min_scores`` applies to them and the explanation says "leads scored on arrival").
        leave_out: features not compared (on arrival: the touch features, which differ between a lead at 0
            and at 40 minutes with nothing changed in the leads).
        min_scores: fewer answers than this give no verdict ("not enough data"): with few answers the PSI
            is large by chance alone (about (bins - 1) / answers).
        leads: distinct leads among the answers; ``min_leads``: fewer give no verdict either (one lead
            scored 500 times is one lead, not a population).

    Returns:
        The status is the worst level of the score and the features; features are listed worst first.
    """
    score_counts = counts.get(SCORE)
    n = int(score_counts.sum()) if score_counts is not None else 0
    if on_arrival and reference.arrival is None:
        raise ValueError("this reference has no on-arrival shares (a model trained before they were kept)")
    if on_arrival and n < min_scores:
        return DriftReport(
            "not enough data",
            n,
            min_scores,
            None,
            [],
            f"{n} leads scored on arrival (within {ARRIVAL_SECONDS // 60} minutes of creation); a verdict needs "
            f"at least {min_scores}",
        )
    if not on_arrival and (n < min_scores or leads < min_leads):
        return DriftReport(
            "not enough data",
            n,
            min_scores,
            None,
            [],
            f"{n} answers of {leads} leads counted; a verdict needs at least {min_scores} answers of {min_leads} leads",
        )
    results = []
    for column, bins in reference.columns():
        served = counts.get(column)
        if column in leave_out or served is None or served.sum() <= 0 or len(served) != bins.size:
            continue
        expected = reference.arrival.get(column) if on_arrival and reference.arrival else bins.shares
        if expected is None or sum(expected) <= 0:
            continue
        value = psi(expected, served)
        results.append(ColumnDrift(column, value, level(value)))
    score = results[0]
    features = sorted(results[1:], key=lambda c: -c.psi)
    rank = {"stable": 0, "warning": 1, "drift": 2}
    status = max([score.level, *(f.level for f in features)], key=rank.__getitem__)
    shifted = [f.column for f in features if f.level != "stable"]
    over = f"{n} leads scored on arrival" if on_arrival else f"{n} answers"
    explanation = f"score PSI {score.psi:.3f} ({score.level}) over {over}"
    if shifted:
        explanation += f"; features shifted: {', '.join(shifted[:5])}" + (" ..." if len(shifted) > 5 else "")
    return DriftReport(status, n, min_scores, score, features, explanation)
