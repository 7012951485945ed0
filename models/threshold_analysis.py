"""The qualified-lead trade-off, from a model's test-window predictions scaled to the recent lead inflow.

For a cut-off c, with n test leads, k of them at or above c, w of those won and W wins in all:
share qualified = k/n, qualified per week = k/n * inflow, precision = w/k, recall = w/W,
expected wins per week = w/n * inflow, lift = precision / (W/n). Each comes with a 95% Wilson interval
(lift's interval is precision's divided by the base rate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Figure:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class CutoffAnalysis:
    cutoff: float
    share_qualified: Figure
    qualified_per_week: Figure
    precision: Figure
    recall: Figure
    expected_wins_per_week: Figure
    lift: Figure
    leads_per_week: float
    test_leads: int
    test_wins: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class TradeOff:
    """Answers "what happens at this cut-off" and the reverse questions, from stored test predictions."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray, leads_per_week: float) -> None:
        order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
        self.p = np.asarray(probabilities, dtype=np.float64)[order]  # descending
        self.y = np.asarray(labels, dtype=np.int64)[order]
        self.cum_wins = np.cumsum(self.y)
        self.n = len(self.p)
        self.wins = int(self.y.sum())
        self.leads_per_week = float(leads_per_week)

    def _count_at(self, cutoff: float) -> int:
        """How many test leads have probability >= cutoff."""
        return int(np.searchsorted(-self.p, -cutoff, side="right"))

    def analyze(self, cutoff: float) -> CutoffAnalysis:
        k = self._count_at(cutoff)
        w = int(self.cum_wins[k - 1]) if k else 0
        n, inflow = self.n, self.leads_per_week
        base = self.wins / n if n else 0.0
        share = wilson(k, n)
        precision = wilson(w, k)
        won_share = wilson(w, n)
        return CutoffAnalysis(
            cutoff=float(cutoff),
            share_qualified=Figure(k / n if n else 0.0, *share),
            qualified_per_week=Figure(k / n * inflow if n else 0.0, share[0] * inflow, share[1] * inflow),
            precision=Figure(w / k if k else 0.0, *precision),
            recall=Figure(w / self.wins if self.wins else 0.0, *wilson(w, self.wins)),
            expected_wins_per_week=Figure(w / n * inflow if n else 0.0, won_share[0] * inflow, won_share[1] * inflow),
            lift=Figure(
                (w / k) / base if k and base else 0.0,
                precision[0] / base if base else 0.0,
                precision[1] / base if base else 0.0,
            ),
            leads_per_week=inflow,
            test_leads=n,
            test_wins=self.wins,
        )

    def candidate_cutoffs(self) -> np.ndarray:
        """Every distinct test probability, highest first (the cut-offs at which anything changes)."""
        return np.unique(self.p)[::-1]

    def cutoff_for_capacity(self, leads_per_week: float) -> float:
        """The lowest cut-off whose qualified leads per week stay within sales capacity."""
        max_k = int(math.floor(leads_per_week / self.leads_per_week * self.n)) if self.leads_per_week else 0
        return self._lowest_cutoff_with_at_most(max_k)

    def cutoff_for_precision(self, min_precision: float) -> float:
        """The lowest cut-off (most leads) whose precision is at least ``min_precision``."""
        ks = np.arange(1, self.n + 1)
        precision = self.cum_wins / ks
        valid = self._boundaries() & (precision >= min_precision)
        if not valid.any():
            return float(self.p[0]) if self.n else 1.0
        return float(self.p[np.flatnonzero(valid)[-1]])

    def cutoff_for_recall(self, min_recall: float) -> float:
        """The highest cut-off (fewest leads) that still catches ``min_recall`` of all conversions."""
        recall = self.cum_wins / max(self.wins, 1)
        valid = self._boundaries() & (recall >= min_recall - 1e-12)
        if not valid.any():
            return float(self.p[-1]) if self.n else 0.0
        return float(self.p[np.flatnonzero(valid)[0]])

    def _boundaries(self) -> np.ndarray:
        """Positions where a cut-off can fall: the last of each run of equal probabilities."""
        last = np.ones(self.n, dtype=bool)
        last[:-1] = self.p[:-1] != self.p[1:]
        return last

    def _lowest_cutoff_with_at_most(self, max_k: int) -> float:
        valid = self._boundaries() & (np.arange(1, self.n + 1) <= max_k)
        if not valid.any():
            return float(np.nextafter(self.p[0], 1.0)) if self.n else 1.0  # nobody qualifies
        return float(self.p[np.flatnonzero(valid)[-1]])

    def curve(self, points: int = 101) -> list[CutoffAnalysis]:
        """The whole trade-off at ``points`` cut-offs (quantiles of the test probabilities)."""
        cutoffs = np.unique(np.quantile(self.p, np.linspace(0, 1, points))) if self.n else np.array([0.5])
        return [self.analyze(float(c)) for c in cutoffs[::-1]]

    def share_at(self, cutoff: float) -> float:
        return self._count_at(cutoff) / self.n if self.n else 0.0

    def cutoff_for_share(self, share: float) -> float:
        """The cut-off that qualifies (as nearly as possible) ``share`` of the test leads."""
        if self.n == 0:
            return 0.5
        k = min(max(int(round(share * self.n)), 0), self.n)
        if k == 0:
            return float(np.nextafter(self.p[0], 1.0))
        return float(self.p[k - 1])
