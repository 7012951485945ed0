"""The qualified-lead trade-off, replayed on the test window the way production runs, counted in LEADS.

Input: the model's test-window predictions, one row per scoring moment of a test lead (``lead_id``, ``as_of``,
``created_at``, calibrated ``probability``, ``label`` = won within the horizon after ``as_of``). Scoring moments
are only taken while a lead is open, so a hand-over at a moment always precedes the close.

For lead i with moments sorted by time, and a cut-off c (n = test leads, L = new leads per week):

* handed_i(c): some moment has probability >= c. The hand-over moment h_i(c) is the FIRST such moment (a lead
  is handed to sales the first time its probability reaches the cut-off).
* success_i(c): handed, and the label of the hand-over moment is 1 (won within the horizon after hand-over).
* W, the window's wins: the leads with label 1 at any of their moments; caught_i(c) = i in W and handed_i(c)
  (handed over before it closed).

Figures (every count is a count of leads, never of rows):

* share of leads handed over = sum handed / n                                  (per lead)
* leads handed over per week = share x L                                        (leads per week)
* precision = sum success / sum handed                                          (per handed lead)
* recall = sum caught / |W|                                                     (per won lead)
* expected wins per week = sum caught / n x L                                   (won leads per week)
* base rate = mean label at each lead's first moment (precision when every lead is handed over when it
  is first scored); lift = precision / base rate                                (ratio)
* median days to hand-over = median over handed leads of (h_i - created_i)     (days)

Expected wins per week counts every win of a handed lead that closes after its hand-over and that the
window counts (W: won within the horizon after one of the lead's moments, so within follow-up + horizon
days of creation; the wins sales receives: recall's numerator), not only those within the horizon after
hand-over: a later hand-over must not count more wins (with "within the horizon after hand-over" a lead
handed over at creation and won on day 100 would count at a low cut-off only if handed later, so the figure
rose with the cut-off), and at the lowest cut-off it is the won leads per week that the data's own last weeks
show. Precision keeps the horizon: it is the model's promise, P(won within the horizon | handed over now).

95% intervals count leads: Wilson score intervals on the lead counts (share: handed of n; precision: success
of handed; recall: caught of |W|; the per-week figures: the interval of their share of n (handed of n, caught
of n) times the interval of L, low times low and high times high, when the inflow's interval is known (a
t interval of the mean of the 12 weekly counts; see ``training.pipeline.weekly_inflow``), else times L;
lift: precision's interval / base rate), and for the median days the distribution-free
order-statistic interval of a median (see :func:`median_interval`). Duplicating a lead's rows changes none
of them.

Where things change: for one lead, as c falls, the hand-over moment moves from its highest "record" moment
(a moment whose probability beats every earlier one) to earlier records. Handed and caught change only at a
lead's maximum; success also changes wherever the hand-over moves to another record. The reverse queries
therefore sweep every record value of every lead, sorted, with cumulative sums of the per-lead changes: exact,
and O(records log records).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
DAY_NS = 86_400 * 10**9
REQUIRED_COLUMNS = ("probability", "label")


class Unreachable(ValueError):
    """No cut-off reaches the requested figure on the test window; ``best`` is the best reachable value."""

    def __init__(self, figure: str, requested: float, best: float, best_cutoff: float | None) -> None:
        where = f" (at cut-off {best_cutoff:.4f})" if best_cutoff is not None else ""
        super().__init__(
            f"no cut-off reaches a {figure} of {requested:.4g} on the test window; "
            f"the best reachable {figure} is {best:.4f}{where}"
        )
        self.figure = figure
        self.requested = requested
        self.best = best
        self.best_cutoff = best_cutoff


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) when there are no trials.

    With p = k/t: (p + z²/2t ± z sqrt(p(1-p)/t + z²/4t²)) / (1 + z²/t).
    Source: E. B. Wilson (1927), "Probable inference, the law of succession, and statistical inference",
    JASA 22:209-212; recommended by Brown, Cai & DasGupta (2001), Statistical Science 16:101-133.
    """
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def median_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of a median, from two order statistics.

    With x_(1) <= ... <= x_(m) and B ~ Binomial(m, 1/2), the interval is [x_(r), x_(m-r+1)] for the largest
    r >= 1 with P(B <= r-1) <= (1-confidence)/2; it covers the median with probability 1 - 2 P(B <= r-1)
    >= confidence, whatever the distribution. Below m = 6 no r reaches 95%: the range [x_(1), x_(m)] is given
    (coverage 1 - 2^(1-m)). Sources: W. J. Conover (1999), Practical Nonparametric Statistics, 3rd ed., sec. 3.2
    (confidence interval for a quantile); G. J. Hahn & W. Q. Meeker (1991), Statistical Intervals, ch. 5.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    m = len(x)
    if m == 0:
        raise ValueError("no values")
    from scipy.stats import binom  # scipy.stats takes 0.6 s to import: only when a median interval is asked for

    below = binom.cdf(np.arange(m), m, 0.5)  # P(B <= k) for k = r-1 = 0..m-1
    fits = np.flatnonzero(below <= (1 - confidence) / 2)
    if not fits.size:
        return (float(x[0]), float(x[-1]))
    r = int(fits[-1]) + 1
    return (float(x[r - 1]), float(x[m - r]))


@dataclass(frozen=True)
class Figure:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class CutoffAnalysis:
    """Every figure of one cut-off, in leads (see the module docstring for the definitions)."""

    cutoff: float
    share_qualified: Figure  # share of test leads handed over (per lead)
    qualified_per_week: Figure  # leads handed over per week
    precision: Figure  # handed leads won within the horizon after hand-over, per handed lead
    recall: Figure  # the window's won leads handed over before they closed, per won lead
    expected_wins_per_week: Figure  # won leads per week among the handed ones (won after hand-over)
    lift: Figure  # precision / base rate
    median_days_to_hand_over: Figure | None  # days from creation to hand-over; None when nobody is handed over
    leads_per_week: float  # new leads per week (recent inflow) the per-week figures are scaled to
    test_leads: int  # n: leads in the test window
    test_wins: int  # |W|: test leads won (label 1 at any of their moments)
    leads_handed_over: int  # test leads handed over at this cut-off
    wins_after_hand_over: int  # handed leads won within the horizon after hand-over
    wins_caught: int  # won test leads handed over before they closed
    base_rate: float  # mean label at each lead's first scoring moment (per lead)
    test_moments: int  # scoring moments (rows) of the test window
    horizon_days: int | None  # "won within the horizon" means within this many days; None: the export's label
    leads_per_week_basis: str = ""  # where leads_per_week comes from (counted, or an assumption)
    follow_up_days: int | None = None  # each test lead was replayed over its first this many days (None: once)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _to_ns(values: Any) -> np.ndarray:
    """Timestamps (naive means UTC) as int64 nanoseconds since the epoch; NaT becomes the int64 minimum."""
    return np.asarray(pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8, dtype=np.int64)


def _last_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """Positions of the last element of each run of equal values."""
    last = np.ones(len(sorted_values), dtype=bool)
    last[:-1] = sorted_values[:-1] != sorted_values[1:]
    return np.flatnonzero(last)


class TradeOff:
    """Answers "what happens at this cut-off" and the reverse questions, replaying the test window per lead.

    Args:
        probabilities: calibrated probability of each scoring moment.
        labels: 0/1, won within the horizon after that moment.
        leads_per_week: new leads per week (recent inflow) that the per-week figures are scaled to.
        lead_ids: the lead of each moment; None treats each row as its own lead (legacy, one moment per lead).
        as_of: the time of each moment; None puts every moment at the same time.
        created_at: when each moment's lead was created; None uses the moment's own ``as_of``.
        horizon_days: the horizon of the labels, reported with the figures.
        leads_per_week_interval: 95% interval of ``leads_per_week`` (None: taken as exact).
        leads_per_week_basis: where ``leads_per_week`` comes from, in words (shown with the figures).
        follow_up_days: the span of each test lead's life the moments cover (days after creation), reported
            with the figures: hand-overs later in a lead's life are not in the replay.
    """

    def __init__(
        self,
        probabilities: Any,
        labels: Any,
        leads_per_week: float,
        *,
        lead_ids: Any = None,
        as_of: Any = None,
        created_at: Any = None,
        horizon_days: int | None = None,
        leads_per_week_interval: tuple[float, float] | None = None,
        leads_per_week_basis: str = "",
        follow_up_days: int | None = None,
    ) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        y_raw = np.asarray(labels)
        rows = len(p)
        if len(y_raw) != rows:
            raise ValueError("probabilities and labels differ in length")
        if np.isnan(p).any():
            raise ValueError("a test probability is missing (NaN)")
        if rows and not np.isin(y_raw, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        y = y_raw.astype(np.int64)
        codes, uniques = (np.arange(rows), np.arange(rows)) if lead_ids is None else pd.factorize(np.asarray(lead_ids))
        if (codes < 0).any():
            raise ValueError("a scoring moment has no lead_id")
        t = np.zeros(rows, dtype=np.int64) if as_of is None else _to_ns(as_of)
        nat = np.iinfo(np.int64).min
        if (t == nat).any():
            raise ValueError("a scoring moment has no time (as_of)")
        born = t.copy() if created_at is None else _to_ns(created_at)
        born = np.where(born == nat, t, born)

        # Moments sorted by lead, then time (at one instant the higher probability first).
        order = np.lexsort((-p, t, codes))
        codes, p, y, t, born = codes[order], p[order], y[order], t[order], born[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if rows else np.zeros(0, dtype=np.int64)
        self.lead_ids = np.asarray(uniques)[codes[starts]] if rows else np.asarray(uniques)
        lead = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, rows]))  # 0..n-1 in sorted order
        self.n = len(starts)
        self.moments = rows
        self.leads_per_week = float(leads_per_week)
        low, high = leads_per_week_interval or (leads_per_week, leads_per_week)
        self.leads_per_week_interval = (float(low), float(high))
        self.horizon_days = horizon_days
        self.leads_per_week_basis = leads_per_week_basis
        self.follow_up_days = follow_up_days
        self.created = np.minimum.reduceat(born, starts) if rows else np.zeros(0, dtype=np.int64)
        self.won = np.maximum.reduceat(y, starts).astype(bool) if rows else np.zeros(0, dtype=bool)
        self.wins = int(self.won.sum())
        self.base_rate = float(y[starts].mean()) if rows else 0.0

        # Records: a lead's first moment, and every moment that beats all its earlier ones.
        running_max = pd.Series(p).groupby(lead).cummax().to_numpy() if rows else p
        record = np.ones(rows, dtype=bool)
        record[1:] = (lead[1:] != lead[:-1]) | (p[1:] > running_max[:-1])
        at = np.flatnonzero(record)
        self._rec_lead = lead[at]  # grouped by lead; values rise within a lead
        self._rec_value = p[at]
        self._rec_label = y[at]
        self._rec_time = t[at]

        # Per-record change as c falls to the record's value: the hand-over moves to this record.
        last = np.ones(len(at), dtype=bool)
        last[:-1] = self._rec_lead[1:] != self._rec_lead[:-1]
        later_label = np.zeros(len(at), dtype=np.int64)
        later_label[:-1] = self._rec_label[1:]
        later_label[last] = 0
        d_handed = last.astype(np.int64)
        d_success = self._rec_label - later_label
        d_caught = (last & self.won[self._rec_lead]).astype(np.int64)
        sweep = np.argsort(-self._rec_value, kind="stable")
        values = self._rec_value[sweep]
        ends = _last_of_runs(values)
        self.cutoffs = values[ends]  # every cut-off at which a figure changes, highest first
        self._handed = np.cumsum(d_handed[sweep])[ends]
        self._success = np.cumsum(d_success[sweep])[ends]
        self._caught = np.cumsum(d_caught[sweep])[ends]
        self.maxima = np.sort(self._rec_value[last])  # each lead's highest probability, ascending

    @classmethod
    def from_predictions(
        cls,
        predictions: pd.DataFrame,
        leads_per_week: float,
        horizon_days: int | None = None,
        leads_per_week_interval: tuple[float, float] | None = None,
        leads_per_week_basis: str = "",
        follow_up_days: int | None = None,
    ) -> TradeOff:
        """From a stored ``test_predictions`` table; extra columns are ignored.

        Without ``created_at`` (a model trained before scoring moments) each row is its own lead, created at
        its ``as_of``.
        """
        missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
        if missing:
            raise ValueError(f"test predictions lack the columns {missing}")
        per_lead = "created_at" in predictions.columns and "lead_id" in predictions.columns
        as_of = predictions["as_of"] if "as_of" in predictions.columns else None
        return cls(
            predictions["probability"].to_numpy(),
            predictions["label"].to_numpy(),
            leads_per_week,
            lead_ids=predictions["lead_id"].astype(str).to_numpy() if per_lead else None,
            as_of=as_of,
            created_at=predictions["created_at"] if per_lead else as_of,
            horizon_days=horizon_days,
            leads_per_week_interval=leads_per_week_interval,
            leads_per_week_basis=leads_per_week_basis,
            follow_up_days=follow_up_days,
        )

    # ---- the replay ------------------------------------------------------------------------
    def _counts(self, cutoff: float) -> tuple[int, int, int]:
        """(handed, success, caught) at ``cutoff``, from the sweep."""
        k = int(np.searchsorted(-self.cutoffs, -cutoff, side="right"))  # candidate values >= cutoff
        if k == 0:
            return (0, 0, 0)
        return (int(self._handed[k - 1]), int(self._success[k - 1]), int(self._caught[k - 1]))

    def _hand_over_records(self, cutoff: float) -> np.ndarray:
        """For each handed lead, the index of its hand-over record: its first record at or above the cut-off."""
        at = np.flatnonzero(self._rec_value >= cutoff)
        leads = self._rec_lead[at]
        first = np.ones(len(at), dtype=bool)
        first[1:] = leads[1:] != leads[:-1]
        return at[first]

    def hand_overs(self, cutoff: float) -> pd.DataFrame:
        """The replay itself: one row per lead handed over at ``cutoff`` (when, after how many days, outcome)."""
        at = self._hand_over_records(cutoff)
        lead = self._rec_lead[at]
        return pd.DataFrame(
            {
                "lead_id": self.lead_ids[lead],
                "handed_over_at": pd.to_datetime(self._rec_time[at], utc=True),
                "days_to_hand_over": (self._rec_time[at] - self.created[lead]) / DAY_NS,
                "probability": self._rec_value[at],
                "won_after_hand_over": self._rec_label[at].astype(bool),
                "won_in_window": self.won[lead],
            }
        )

    def analyze(self, cutoff: float) -> CutoffAnalysis:
        """Every figure at ``cutoff``, with 95% intervals over leads."""
        handed, success, caught = self._counts(cutoff)
        n, inflow, base = self.n, self.leads_per_week, self.base_rate
        in_low, in_high = self.leads_per_week_interval
        share = wilson(handed, n)
        caught_share = wilson(caught, n)
        precision = wilson(success, handed)
        median: Figure | None = None
        if handed:
            at = self._hand_over_records(cutoff)
            days = (self._rec_time[at] - self.created[self._rec_lead[at]]) / DAY_NS
            median = Figure(float(np.median(days)), *median_interval(days))
        return CutoffAnalysis(
            cutoff=float(cutoff),
            share_qualified=Figure(handed / n if n else 0.0, *share),
            qualified_per_week=Figure(handed / n * inflow if n else 0.0, share[0] * in_low, share[1] * in_high),
            precision=Figure(success / handed if handed else 0.0, *precision),
            recall=Figure(caught / self.wins if self.wins else 0.0, *wilson(caught, self.wins)),
            expected_wins_per_week=Figure(
                caught / n * inflow if n else 0.0, caught_share[0] * in_low, caught_share[1] * in_high
            ),
            lift=Figure(
                (success / handed) / base if handed and base else 0.0,
                precision[0] / base if base else 0.0,
                precision[1] / base if base else 0.0,
            ),
            median_days_to_hand_over=median,
            leads_per_week=inflow,
            test_leads=n,
            test_wins=self.wins,
            leads_handed_over=handed,
            wins_after_hand_over=success,
            wins_caught=caught,
            base_rate=base,
            test_moments=self.moments,
            horizon_days=self.horizon_days,
            leads_per_week_basis=self.leads_per_week_basis,
            follow_up_days=self.follow_up_days,
        )

    # ---- reverse queries -------------------------------------------------------------------
    def candidate_cutoffs(self) -> np.ndarray:
        """Every cut-off at which a figure changes (every record value of every lead), highest first."""
        return self.cutoffs

    def _above_all(self) -> float:
        """A cut-off that hands over nobody."""
        return float(np.nextafter(self.cutoffs[0], np.inf)) if self.n else 1.0

    def cutoff_for_capacity(self, leads_per_week: float) -> float:
        """The lowest cut-off whose leads handed over per week stay within ``leads_per_week`` (sales capacity).

        When even the highest cut-off hands over more, the cut-off just above every probability (nobody).
        """
        if not self.n:
            return 1.0
        per_week = self._handed / self.n * self.leads_per_week  # the same expression as analyze()
        fits = np.flatnonzero(per_week <= leads_per_week)
        return float(self.cutoffs[fits[-1]]) if fits.size else self._above_all()

    def cutoff_for_precision(self, min_precision: float) -> float:
        """The lowest cut-off (most leads) whose precision is at least ``min_precision``.

        Raises:
            Unreachable: no cut-off reaches it; ``best`` is the highest precision of any cut-off.
        """
        if not self.n:
            raise Unreachable("precision", min_precision, 0.0, None)
        precision = self._success / self._handed  # handed >= 1 at every candidate
        fits = np.flatnonzero(precision >= min_precision)
        if not fits.size:
            best = np.flatnonzero(precision == precision.max())[-1]
            raise Unreachable("precision", min_precision, float(precision[best]), float(self.cutoffs[best]))
        return float(self.cutoffs[fits[-1]])

    def cutoff_for_recall(self, min_recall: float) -> float:
        """The highest cut-off (fewest leads) that hands over at least ``min_recall`` of the window's wins.

        Raises:
            Unreachable: no cut-off reaches it (only when the window has no wins, or for a recall above 1).
        """
        if not self.wins:
            raise Unreachable("recall", min_recall, 0.0, None)
        recall = self._caught / self.wins
        fits = np.flatnonzero(recall >= min_recall)
        if not fits.size:
            raise Unreachable("recall", min_recall, float(recall[-1]), float(self.cutoffs[-1]))
        return float(self.cutoffs[fits[0]])

    # ---- model change ----------------------------------------------------------------------
    def share_at(self, cutoff: float) -> float:
        """Share of test leads handed over at ``cutoff`` (per lead)."""
        return self._counts(cutoff)[0] / self.n if self.n else 0.0

    def cutoff_for_share(self, share: float) -> float:
        """The cut-off that hands over (as nearly as possible) ``share`` of the test leads.

        Each lead is handed over iff its highest probability reaches the cut-off, so the k-th highest lead
        maximum hands over k leads (ties hand over all the tied leads).
        """
        if self.n == 0:
            return 0.5
        k = min(max(int(round(share * self.n)), 0), self.n)
        return float(self.maxima[self.n - k]) if k else self._above_all()

    def default_cutoffs(self) -> dict[str, float]:
        """Until a policy exists: grade A hands over the top 10% of leads, B the next 20%, C the next 30%;
        qualified = A or B (30% of leads)."""
        a, b, c = (self.cutoff_for_share(share) for share in (0.1, 0.3, 0.6))
        return {"a": a, "b": b, "c": c, "qualified": b}

    # ---- the whole curve ---------------------------------------------------------------------
    def curve(self, points: int = 101) -> list[CutoffAnalysis]:
        """The trade-off at about ``points`` cut-offs, highest first: quantiles of the lead maxima (even steps
        of the share handed over), and the lowest cut-off, which hands every lead over when first scored."""
        if not self.n:
            return [self.analyze(0.5)]
        quantiles = np.quantile(self.maxima, np.linspace(0, 1, points), method="inverted_cdf")
        cutoffs = np.unique(np.r_[quantiles, self.cutoffs[-1]])
        return [self.analyze(float(c)) for c in cutoffs[::-1]]

    def table(self, points: int = 101) -> pd.DataFrame:
        """:meth:`curve` as a table, one row per cut-off: each figure with ``_low``/``_high`` 95% bounds."""
        rows = []
        for a in self.curve(points):
            row: dict[str, object] = {}
            for f in fields(a):
                value = getattr(a, f.name)
                if isinstance(value, Figure) or f.name == "median_days_to_hand_over":
                    row[f.name] = value.value if value else float("nan")
                    row[f"{f.name}_low"] = value.low if value else float("nan")
                    row[f"{f.name}_high"] = value.high if value else float("nan")
                else:
                    row[f.name] = value
            rows.append(row)
        return pd.DataFrame(rows)
