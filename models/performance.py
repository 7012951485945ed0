"""Realised against promised: what the leads handed over to sales did, per cohort, from the score log.

Every figure counts leads (one hand-over per lead at most, one first score per lead), so the 95% intervals
(Wilson, see :func:`models.threshold_analysis.wilson`) treat leads as independent trials.

Definitions (``horizon``: the model's conversion horizon in days; ``as_of``: the moment the report is made):

- A lead is **handed over** at the ``as_of`` of the first answer that said qualified.
- It is **mature** when ``handed_over_at + horizon <= as_of``: its outcome within the horizon is known.
- **Won within the horizon**: its latest outcome is won, closed at or after the hand-over, at most ``horizon``
  days after it, and not after ``as_of``.
- **Realised precision** (per cohort, over its mature leads): won within the horizon / mature leads;
  **expected precision**: the mean probability at hand-over of the same leads (what the model promised).
- **Maturing** leads (horizon still open): wins so far, and the expected wins, the sum of their probabilities.
- **Wins caught / missed**: the wins closed between ``start`` and ``end`` (and not after ``as_of``); caught
  when the lead was handed over at or before it closed, missed when it had been scored but not handed over
  by then; a win of a lead never scored before it closed is counted apart (``wins_not_scored``). Wins are
  grouped by the week they closed (``by=week``), else by the lead's hand-over (caught) or first score (missed).
- **Calibration**: the leads first scored between ``start`` and ``end`` whose horizon after that score has
  closed, in up to 10 groups of equal size by the probability of their first score (deciles): mean
  probability against the share won within the horizon after the first score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from models.threshold_analysis import wilson

GROUPINGS = ("week", "lead_source", "campaign", "model_version", "threshold_version")
NONE_LABEL = "(none)"
DECILES = 10


@dataclass(frozen=True)
class CohortResult:
    """The figures of one cohort of leads handed over (all counts are leads)."""

    cohort: str
    status: str  # mature, maturing, partly mature
    handed_over: int
    accepted: int
    rejected: int
    recycled: int
    no_verdict: int
    rejected_by_reason: dict[str, int]
    mature: int
    won_within_horizon: int
    realised_precision: float | None  # per mature lead handed over
    realised_precision_interval: tuple[float, float] | None
    expected_precision: float | None  # mean probability at hand-over of the mature leads
    maturing: int
    wins_so_far: int  # of the maturing leads
    expected_wins: float  # of the maturing leads: the sum of their probabilities at hand-over
    wins_caught: int
    wins_missed: int
    median_days_to_hand_over: float | None  # days from the lead's creation to its hand-over


@dataclass(frozen=True)
class CalibrationBin:
    leads: int
    mean_probability: float
    won: int
    observed_rate: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class PerformanceReport:
    start: datetime
    end: datetime
    as_of: datetime
    by: str
    horizon_days: int
    cohorts: list[CohortResult]
    total: CohortResult
    wins_not_scored: int
    calibration: list[CalibrationBin] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def week_of(times: pd.Series) -> pd.Series:
    """The Monday (UTC, ``YYYY-MM-DD``) starting the ISO week of each time."""
    days = times.dt.tz_convert("UTC").dt.floor("D")
    return (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")


def _labels(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), NONE_LABEL).astype(str)


def _versions_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Versions as the labels of cohorts (text), before any merge can turn a column of integers to floats."""
    return frame.assign(
        model_version=frame["model_version"].astype(str),
        threshold_version=frame["threshold_version"].map(lambda v: str(int(v))),
    )


def _cohort(name: str, handed: pd.DataFrame, caught: int, missed: int) -> CohortResult:
    verdict = handed["verdict"]
    rejected = handed[verdict == "rejected"]
    mature = handed[handed["mature"]]
    maturing = handed[~handed["mature"]]
    won = int(mature["won_within_horizon"].sum())
    n_mature = len(mature)
    days = (handed["handed_over_at"] - handed["created_at"]).dt.total_seconds() / 86400.0
    status = "mature" if len(maturing) == 0 else "maturing" if n_mature == 0 else "partly mature"
    return CohortResult(
        cohort=name,
        status=status if len(handed) else "no hand-overs",
        handed_over=len(handed),
        accepted=int((verdict == "accepted").sum()),
        rejected=len(rejected),
        recycled=int((verdict == "recycled").sum()),
        no_verdict=int(verdict.isna().sum()),
        rejected_by_reason={
            str(k): int(v) for k, v in rejected["reason"].fillna("other").value_counts().sort_index().items()
        },
        mature=n_mature,
        won_within_horizon=won,
        realised_precision=won / n_mature if n_mature else None,
        realised_precision_interval=wilson(won, n_mature) if n_mature else None,
        expected_precision=float(mature["probability"].mean()) if n_mature else None,
        maturing=len(maturing),
        wins_so_far=int(maturing["won_within_horizon"].sum()),
        expected_wins=float(maturing["probability"].sum()),
        wins_caught=caught,
        wins_missed=missed,
        median_days_to_hand_over=float(days.median()) if len(days) else None,
    )


def performance(
    hand_overs: pd.DataFrame,
    scored_leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    verdicts: pd.DataFrame,
    *,
    horizon_days: int,
    start: datetime,
    end: datetime,
    as_of: datetime,
    by: str = "week",
) -> PerformanceReport:
    """Realised against expected results of the leads handed over between ``start`` and ``end``.

    Args:
        hand_overs: one row per lead handed over: lead_id, handed_over_at, created_at (UTC), probability,
            model_version, threshold_version, lead_source, campaign.
        scored_leads: one row per lead scored: lead_id, first_as_of, created_at, probability (at the first
            score), model_version, threshold_version, lead_source, campaign.
        outcomes: each lead's latest outcome: lead_id, outcome (won/lost), closed_at.
        verdicts: each lead's latest verdict: lead_id, verdict, reason.
        horizon_days: the conversion horizon (days) within which a win counts.
        start, end: the period (hand-over times in ``[start, end)``; wins closed in it).
        as_of: the moment of the report: outcomes after it are not known, maturity is judged at it.
        by: one of :data:`GROUPINGS`.

    Returns:
        The cohorts (sorted by name), the total over all of them, and the calibration (see the module
        docstring for each definition).

    Raises:
        ValueError: ``by`` is not one of :data:`GROUPINGS`, or ``start`` is not before ``end``.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)} (got {by!r})")
    if not start < end:
        raise ValueError("start must be before end")
    start_ts, end_ts, as_of_ts = (pd.Timestamp(t).tz_convert("UTC") for t in (start, end, as_of))
    horizon = pd.Timedelta(days=horizon_days)
    hand_overs, scored_leads = (_versions_as_text(f) for f in (hand_overs, scored_leads))
    known = outcomes[outcomes["closed_at"] <= as_of_ts][["lead_id", "outcome", "closed_at"]]
    wins = known[known["outcome"] == "won"]

    handed = hand_overs[(hand_overs["handed_over_at"] >= start_ts) & (hand_overs["handed_over_at"] < end_ts)]
    handed = handed.merge(wins[["lead_id", "closed_at"]], on="lead_id", how="left")
    handed = handed.merge(verdicts[["lead_id", "verdict", "reason"]], on="lead_id", how="left")
    handed["mature"] = handed["handed_over_at"] + horizon <= as_of_ts
    handed["won_within_horizon"] = (
        handed["closed_at"].notna()
        & (handed["closed_at"] >= handed["handed_over_at"])
        & (handed["closed_at"] <= handed["handed_over_at"] + horizon)
    )
    key_column = "handed_over_at" if by == "week" else by
    handed["cohort"] = week_of(handed["handed_over_at"]) if by == "week" else _labels(handed[key_column])

    # Wins closed in the period: caught (handed over by then), missed (scored, not handed over), not scored.
    period_wins = wins[(wins["closed_at"] >= start_ts) & (wins["closed_at"] < end_ts)]
    w = period_wins.merge(
        hand_overs[["lead_id", "handed_over_at", "model_version", "threshold_version", "lead_source", "campaign"]],
        on="lead_id",
        how="left",
    ).merge(
        scored_leads[["lead_id", "first_as_of", "model_version", "threshold_version", "lead_source", "campaign"]],
        on="lead_id",
        how="left",
        suffixes=("", "_first"),
    )
    caught = w["handed_over_at"].notna() & (w["handed_over_at"] <= w["closed_at"])
    scored_before = w["first_as_of"].notna() & (w["first_as_of"] <= w["closed_at"])
    missed = ~caught & scored_before
    if by == "week":
        w["cohort"] = week_of(w["closed_at"])
    else:
        w["cohort"] = _labels(w[by].where(caught, w[f"{by}_first"]))
    caught_by = w[caught].groupby("cohort").size()
    missed_by = w[missed].groupby("cohort").size()

    names = sorted(set(handed["cohort"]) | set(caught_by.index) | set(missed_by.index))
    cohorts = [
        _cohort(name, handed[handed["cohort"] == name], int(caught_by.get(name, 0)), int(missed_by.get(name, 0)))
        for name in names
    ]
    total = _cohort("all", handed, int(caught.sum()), int(missed.sum()))

    # Calibration of first scores whose horizon has closed.
    first = scored_leads[
        (scored_leads["first_as_of"] >= start_ts)
        & (scored_leads["first_as_of"] < end_ts)
        & (scored_leads["first_as_of"] + horizon <= as_of_ts)
    ].merge(wins[["lead_id", "closed_at"]], on="lead_id", how="left")
    first_won = (
        first["closed_at"].notna()
        & (first["closed_at"] >= first["first_as_of"])
        & (first["closed_at"] <= first["first_as_of"] + horizon)
    ).to_numpy()
    order = np.argsort(first["probability"].to_numpy(), kind="stable")
    bins = []
    for part in np.array_split(order, min(DECILES, len(order))) if len(order) else []:
        k, n = int(first_won[part].sum()), len(part)
        bins.append(
            CalibrationBin(
                leads=n,
                mean_probability=float(first["probability"].to_numpy()[part].mean()),
                won=k,
                observed_rate=k / n,
                interval=wilson(k, n),
            )
        )
    return PerformanceReport(
        start=start_ts.to_pydatetime(),
        end=end_ts.to_pydatetime(),
        as_of=as_of_ts.to_pydatetime(),
        by=by,
        horizon_days=horizon_days,
        cohorts=cohorts,
        total=total,
        wins_not_scored=int((~caught & ~scored_before).sum()),
        calibration=bins,
    )
