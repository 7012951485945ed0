"""Training examples: point-in-time snapshots of open leads, labelled by a win within the horizon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data import CRMData

FLAT_TIME = pd.Timestamp("2000-01-01", tz="UTC")


@dataclass(frozen=True)
class SnapshotConfig:
    """How snapshots are taken.

    Attributes:
        horizon_days: a snapshot is positive when the lead is won within this many days after ``as_of``.
        every_days: spacing of snapshot times.
        max_lead_age_days: only leads created at most this long before ``as_of`` are snapshotted.
    """

    horizon_days: int = 90
    every_days: int = 30
    max_lead_age_days: int = 180


def snapshot_times(data: CRMData, config: SnapshotConfig) -> pd.DatetimeIndex:
    """Snapshot times from one step after the first lead up to the last time whose horizon is observed."""
    first = data.leads["created_at"].min().normalize() + pd.Timedelta(days=config.every_days)
    last = data.end_time - pd.Timedelta(days=config.horizon_days)
    if last < first:
        return pd.DatetimeIndex([], tz="UTC")
    # Anchor at the last observable time so the newest snapshots are as recent as the data allows.
    n = int((last - first) / pd.Timedelta(days=config.every_days)) + 1
    return pd.DatetimeIndex([last - pd.Timedelta(days=config.every_days * i) for i in range(n)][::-1])


def make_snapshots(data: CRMData, config: SnapshotConfig) -> pd.DataFrame:
    """One row per (lead, as_of) for leads open at ``as_of``; ``label`` = won within the horizon.

    Snapshots whose horizon runs past the end of the data are never produced (censoring), and nothing
    after ``as_of`` reaches a feature: the returned rows carry only the lead's own columns and ``as_of``.

    Args:
        data: validated CRM data with timestamps.
        config: horizon and snapshot spacing.

    Returns:
        The lead columns plus ``as_of`` and ``label`` (0/1), sorted by ``as_of`` then ``lead_id``.
    """
    leads = data.leads
    outcome = leads[["lead_id"]].merge(data.outcomes[["lead_id", "outcome", "closed_at"]], on="lead_id", how="left")
    created = leads["created_at"].dt.tz_convert(None).to_numpy()
    closed = pd.to_datetime(outcome["closed_at"], utc=True).dt.tz_convert(None).to_numpy()
    won = (outcome["outcome"] == "won").to_numpy()
    horizon = np.timedelta64(config.horizon_days, "D")
    max_age = np.timedelta64(config.max_lead_age_days, "D")
    parts = []
    for as_of in snapshot_times(data, config):
        t = as_of.tz_convert(None).to_datetime64()
        open_now = (created <= t) & (created >= t - max_age) & ~(closed <= t)  # NaT compares False: still open
        idx = np.flatnonzero(open_now)
        label = won[idx] & (closed[idx] <= t + horizon)
        part = leads.iloc[idx].copy()
        part["as_of"] = as_of
        part["label"] = label.astype(int)
        parts.append(part)
    if not parts:
        return leads.iloc[:0].assign(as_of=pd.Series(dtype="datetime64[ns, UTC]"), label=pd.Series(dtype=int))
    return pd.concat(parts, ignore_index=True)


def flat_examples(data: CRMData) -> pd.DataFrame:
    """A flat export: one example per lead, scored at its creation (or a fixed time when there is none)."""
    leads = data.leads.copy()
    won = leads["lead_id"].map(data.outcomes.set_index("lead_id")["outcome"]).eq("won")
    if not data.has_time:
        leads["created_at"] = FLAT_TIME
    leads["as_of"] = leads["created_at"]
    leads["label"] = won.astype(int).to_numpy()
    return leads
