"""Scoring requests: validation of times, features for now and a week ago, probabilities, reasons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from features.build import (
    RecordColumns,
    build_features_from_columns,
    columns_of_records,
    datetimes_to_ns,
)
from features.kernel import NS_PER_DAY
from models.scoring_model import GradeCutoffs
from serving.errors import InvalidLeadData
from serving.model_source import Serving
from serving.schemas import LeadIn, ReasonOut, ScoreOut

TREND_DAYS = 7
TREND_POINTS = 5  # score points that make a trend
_NOW_AND_BEFORE = np.array([0, TREND_DAYS * NS_PER_DAY], dtype=np.int64)


@dataclass(slots=True)  # built per request: plain slots (a frozen init costs twice as much)
class Threshold:
    """The cut-offs in force and the policy version they come from (0: the model's defaults)."""

    cutoffs: GradeCutoffs
    version: int


def check_times(columns: RecordColumns, as_of_ns: np.ndarray, latest: int, max_future: timedelta, batch: bool) -> None:
    """422 listing the fields with a time before 1970 or after ``latest`` (ns; ``max_future`` from now), and
    the leads created after the ``as_of`` they are scored at (nothing is known of a lead before it exists)."""
    earliest_seen, latest_seen = columns.time_range_ns
    as_of = as_of_ns.tolist()
    if as_of:
        earliest_seen, latest_seen = min(earliest_seen, *as_of), max(latest_seen, *as_of)
    unborn = columns.created_ns > as_of_ns
    if earliest_seen >= 0 and latest_seen <= latest and not unborn.any():
        return  # the usual case: every time is in range
    lead_path: Callable[[int], list[str | int]] = (lambda i: ["body", "leads", i]) if batch else (lambda i: ["body"])
    late = f"timestamp more than {max_future.days} day(s) in the future"
    found: list[tuple[tuple[int, int, int], list[str | int], str]] = []  # (body order, path, message)
    fields = (
        (columns.created_ns, lambda i: i, lambda i: [*lead_path(i), "created_at"]),
        (as_of_ns, lambda i: i, lambda i: [*lead_path(i), "as_of"]),
        (columns.touch_ns, lambda j: int(columns.touch_lead[j]), lambda j: _touch_path(columns, j, lead_path)),
    )
    for rank, (values, lead_of, path) in enumerate(fields):  # within a lead: created_at, as_of, touches
        # each kind up to one more than is listed: whichever come first in the body, the answer has them
        for i in np.flatnonzero((values < 0) | (values > latest))[: InvalidLeadData.MAX_LISTED + 1].tolist():
            found.append(((lead_of(i), rank, i), path(i), "timestamp before 1970" if values[i] < 0 else late))
    for i in np.flatnonzero(unborn)[: InvalidLeadData.MAX_LISTED + 1].tolist():
        found.append(((i, 0, i), [*lead_path(i), "created_at"], "created after as_of: the lead did not exist yet"))
    raise InvalidLeadData.listing([(loc, message) for _, loc, message in sorted(found, key=lambda f: f[0])])


def _touch_path(columns: RecordColumns, j: int, lead_path: Callable[[int], list[str | int]]) -> list[str | int]:
    lead = int(columns.touch_lead[j])
    position = j - int(np.searchsorted(columns.touch_lead, lead, side="left"))
    return [*lead_path(lead), "touchpoints", position, "occurred_at"]


def score_leads(
    serving: Serving,
    leads: list[LeadIn],
    threshold: Threshold,
    now: datetime,
    max_future: timedelta,
    explain: bool,
    batch: bool,
    features_out: list[np.ndarray] | None = None,
) -> list[ScoreOut]:
    """Score leads with the served model; each lead also at ``as_of - 7 days`` for its trend.

    ``features_out``, when given, receives the feature rows the answers were computed from (one per lead).
    """
    model = serving.loaded.model
    columns = columns_of_records(leads, model.spec)
    stamps = datetimes_to_ns([now + max_future, *(now if lead.as_of is None else lead.as_of for lead in leads)])
    as_of_ns = stamps[1:]
    check_times(columns, as_of_ns, int(stamps[0]), max_future, batch)
    times = as_of_ns[:, None] - _NOW_AND_BEFORE  # lead i now, and a week before (its trend)
    both = build_features_from_columns(columns, times, model.spec)  # lead 0 now, before, lead 1 now, ...
    p_all = model.predict_proba(both)
    if features_out is not None:
        features_out.append(both[0::2])
    probabilities, scores = p_all[0::2].tolist(), model.score(p_all).tolist()  # plain floats from here on
    new = (columns.created_ns > times[:, 1]).tolist()  # younger than the trend's week: nothing to compare with
    explanations = model.explain(both[0::2], [lead.attributes for lead in leads]) if explain else None
    version, cutoffs = serving.loaded.version, threshold.cutoffs
    out = []
    for i, lead in enumerate(leads):
        e = explanations[i] if explanations else None
        p, score, change = probabilities[i], scores[2 * i], scores[2 * i] - scores[2 * i + 1]
        out.append(
            ScoreOut(
                lead_id=lead.lead_id,
                probability=p,
                score=score,
                grade=cutoffs.grade_of(p),
                qualified=p >= cutoffs.qualified,
                fit=e.fit if e else None,
                engagement=e.engagement if e else None,
                trend="new"
                if new[i]
                else "rising"
                if change >= TREND_POINTS
                else "falling"
                if change <= -TREND_POINTS
                else "steady",
                reasons=[ReasonOut(feature=r.feature, description=r.description, impact=r.impact) for r in e.reasons]
                if e
                else [],
                model_version=version,
                threshold_version=threshold.version,
            )
        )
    return out
