"""Training examples: a lead at each moment production scores it, labelled by a win within the horizon.

A CRM asks for a score when a lead arrives, again after days with activity, and on a schedule. The training
examples are those same moments (all configurable and recorded with the model), so no lead can convert
without ever being an example, and the moment a lead is first scored is a moment the model was trained on:

* **creation**: ``as_of = created_at`` (the touches logged at that very time count); taken even when the
  lead was closed at that same instant (a date-only export of a lead won on its first day);
* **activity**: for each UTC day with at least one touch, ``as_of`` = the time of that day's last touch;
* **periodic**: ``created_at + k * every_days`` for ``k = 1, 2, ...``.

Only moments at most ``max_lead_age_days`` after creation, while the lead is still open (before its close),
are taken. The label of a moment is 1 when the lead was won within ``horizon_days`` after it. A moment whose
horizon runs past the end of the data is never produced (censoring).

**Weights.** A long-lived, busy lead has dozens of moments and a lead won on its first day has one. Fitted
row by row, the busy leads would dominate the model and every figure, while the decisions the product
supports (hand a lead to sales or not) and the units it reports (leads, not rows) count each lead once. So
each example weighs ``1 / (moments of its lead in its window)`` in fitting: every lead weighs one, however
often it is scored. Calibration and the test figures over all moments count every moment once, and the
first-score figures every lead once: a weight that depends on the lead's later activity (an active lead has
more moments, and converts more) would bias any rate it weighs, and a served probability is a promise about
the moment it is served at (see :func:`training.pipeline.choose_calibrator`). The trade-off counts leads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from training.data import CRMData

FLAT_TIME = pd.Timestamp("2000-01-01", tz="UTC")
NS_PER_DAY = 86_400 * 10**9
MOMENT_KINDS = ("creation", "activity", "periodic")


@dataclass(frozen=True)
class MomentConfig:
    """When a lead is scored, and so taken as a training example.

    Attributes:
        horizon_days: a moment is positive when the lead is won within this many days after it.
        at_creation: a moment when the lead is created.
        after_activity: a moment after each UTC day with activity (at that day's last touch).
        every_days: periodic moments this many days apart from creation (``0``: none).
        max_lead_age_days: no moments later than this many days after creation.
    """

    horizon_days: int = 90
    at_creation: bool = True
    after_activity: bool = True
    every_days: int = 30
    max_lead_age_days: int = 180

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def scoring_moments(data: CRMData, config: MomentConfig, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every scoring moment of every lead, labelled, up to ``until`` (default: the end of the data minus the
    horizon, so that each label is observed).

    Args:
        data: validated CRM data with timestamps.
        config: which moments, the horizon and the age limit.
        until: the latest ``as_of`` to produce.

    Returns:
        One row per (lead, moment): the lead's columns, ``as_of`` (UTC), ``moment`` (creation, activity or
        periodic; when two kinds fall on the same instant the first of that order is kept), ``label`` (0/1)
        and ``won_at`` (the lead's win time, NaT if not won), sorted by lead (in the leads table's order)
        then ``as_of``.
    """
    leads = data.leads
    n = len(leads)
    created = _ns(leads["created_at"])
    close_ns, won_ns = _close_times(data)
    horizon = config.horizon_days * NS_PER_DAY
    last = (data.end_time.value - horizon) if until is None else pd.Timestamp(until).value
    limit = np.minimum(created + config.max_lead_age_days * NS_PER_DAY, last)

    lead_parts: list[np.ndarray] = []
    time_parts: list[np.ndarray] = []
    kind_parts: list[np.ndarray] = []
    if config.at_creation:
        lead_parts.append(np.arange(n))
        time_parts.append(created)
        kind_parts.append(np.zeros(n, dtype=np.int8))
    if config.after_activity and data.touchpoints is not None and len(data.touchpoints):
        t_lead, t_time = _activity_moments(data, leads)
        lead_parts.append(t_lead)
        time_parts.append(t_time)
        kind_parts.append(np.ones(len(t_lead), dtype=np.int8))
    if config.every_days > 0:
        steps = config.max_lead_age_days // config.every_days
        k = np.arange(1, steps + 1)
        lead_parts.append(np.repeat(np.arange(n), steps))
        time_parts.append((created[:, None] + k[None, :] * config.every_days * NS_PER_DAY).reshape(-1))
        kind_parts.append(np.full(n * steps, 2, dtype=np.int8))
    lead = np.concatenate(lead_parts) if lead_parts else np.zeros(0, dtype=np.int64)
    time = np.concatenate(time_parts) if time_parts else np.zeros(0, dtype=np.int64)
    kind = np.concatenate(kind_parts) if kind_parts else np.zeros(0, dtype=np.int8)

    # Open: before its close. A lead closed the instant it was created (date-only exports) is still scored once,
    # at creation, so that no lead can convert without ever being an example.
    open_then = (time < close_ns[lead]) | ((kind == 0) & (time <= close_ns[lead]))
    keep = (time >= created[lead]) & (time <= limit[lead]) & open_then
    lead, time, kind = lead[keep], time[keep], kind[keep]
    order = np.lexsort((kind, time, lead))
    lead, time, kind = lead[order], time[order], kind[order]
    first_of_instant = np.ones(len(lead), dtype=bool)
    first_of_instant[1:] = (lead[1:] != lead[:-1]) | (time[1:] != time[:-1])
    lead, time, kind = lead[first_of_instant], time[first_of_instant], kind[first_of_instant]

    won_at = won_ns[lead]
    label = (won_at >= time) & (won_at <= time + horizon)
    rows = leads.iloc[lead].reset_index(drop=True)
    rows["as_of"] = pd.to_datetime(time, utc=True)
    rows["moment"] = pd.Categorical.from_codes(kind.astype(np.int64), categories=pd.Index(MOMENT_KINDS))
    rows["label"] = label.astype(np.int64)
    rows["won_at"] = pd.to_datetime(np.where(won_at == _NEVER, np.iinfo(np.int64).min, won_at), utc=True)
    return rows


_NEVER = np.iinfo(np.int64).max


def _ns(times: pd.Series) -> np.ndarray:
    return times.dt.tz_convert("UTC").dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)


def _close_times(data: CRMData) -> tuple[np.ndarray, np.ndarray]:
    """Per lead (in the leads table's order): its close time and its win time, int64 ns (``_NEVER`` if none)."""
    outcomes = data.outcomes
    position = pd.Index(outcomes["lead_id"]).get_indexer(data.leads["lead_id"])
    closed = pd.to_datetime(outcomes["closed_at"], utc=True)
    closed_ns = np.append(
        np.where(closed.isna(), _NEVER, closed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)),
        _NEVER,
    )  # position -1 (no outcome) reads the last value: never
    won = np.append(outcomes["outcome"].eq("won").to_numpy(dtype=bool), False)
    close_ns = closed_ns[position]
    won_ns = np.where(won[position], close_ns, _NEVER)
    return close_ns.astype(np.int64), won_ns.astype(np.int64)


def _activity_moments(data: CRMData, leads: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(lead position, time) of the last touch of each UTC day with activity, per lead."""
    assert data.touchpoints is not None
    touches = data.touchpoints
    position = pd.Index(leads["lead_id"]).get_indexer(touches["lead_id"])
    time = _ns(touches["occurred_at"])
    known = position >= 0
    frame = pd.DataFrame({"lead": position[known], "day": time[known] // NS_PER_DAY, "time": time[known]})
    last = frame.groupby(["lead", "day"], sort=False)["time"].max()
    return last.index.get_level_values("lead").to_numpy(np.int64), last.to_numpy(np.int64)


def flat_moments(data: CRMData, horizon_days: int, notes: list[str]) -> pd.DataFrame:
    """A flat export (no touch log): one example per lead, scored at its creation.

    Without a time column every lead is scored at one fixed time and labelled by the export's label. With
    one, leads younger than the horizon at the end of the data are left out (their outcome is not known
    yet), and the label is a win within the horizon when the export has a close date; without a close date a
    converted lead is assumed to have converted within the horizon, and the notes say so.
    """
    leads = data.leads.copy()
    outcomes = data.outcomes.set_index("lead_id")
    won = leads["lead_id"].map(outcomes["outcome"]).eq("won").to_numpy()
    won_at = pd.to_datetime(leads["lead_id"].map(outcomes["closed_at"]), utc=True)
    if not data.has_time:
        leads["created_at"] = FLAT_TIME
        leads["as_of"] = FLAT_TIME
        leads["moment"] = pd.Categorical(["creation"] * len(leads), categories=list(MOMENT_KINDS))
        leads["label"] = won.astype(np.int64)
        leads["won_at"] = won_at.where(pd.Series(won)).to_numpy()
        return leads
    horizon = pd.Timedelta(days=horizon_days)
    young = (leads["created_at"] > data.end_time - horizon).to_numpy()
    if young.any():
        notes.append(
            f"{int(young.sum()):,} leads created in the last {horizon_days} days before the end of the data "
            f"({data.end_time.date()}) are left out: their outcome within the horizon is not known yet (censoring)"
        )
    if won_at.notna().any():
        label = won & (won_at <= leads["created_at"] + horizon).fillna(False).to_numpy(dtype=bool)
        undated = won & won_at.isna().to_numpy()
        if undated.any():
            notes.append(f"{int(undated.sum()):,} converted leads have no close date: assumed won within the horizon")
            label |= undated
    else:
        notes.append(
            f"no close-date column: a converted lead is assumed to have converted within {horizon_days} days of "
            "its creation (give --close-column to label by the horizon)"
        )
        label = won
    leads["as_of"] = leads["created_at"]
    leads["moment"] = pd.Categorical(["creation"] * len(leads), categories=list(MOMENT_KINDS))
    leads["label"] = label.astype(np.int64)
    leads["won_at"] = won_at.where(pd.Series(won)).to_numpy()
    return leads.loc[~young].reset_index(drop=True)
