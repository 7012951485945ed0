"""Scoring requests: validation of times, features for now and a week ago, probabilities, reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from features import build_features_at
from models.scoring_model import GradeCutoffs
from serving.errors import InvalidLeadData
from serving.model_source import Serving
from serving.schemas import LeadIn, ReasonOut, ScoreOut

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TREND_DAYS = 7
TREND_POINTS = 5  # score points that make a trend


@dataclass(frozen=True)
class Threshold:
    """The cut-offs in force and the policy version they come from (0: the model's defaults)."""

    cutoffs: GradeCutoffs
    version: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_times(lead: LeadIn, now: datetime, max_future: timedelta, path: list[str | int]) -> None:
    """422 naming the field for a time before 1970 or too far in the future."""
    latest = now + max_future

    def check(value: datetime, loc: list[str | int]) -> None:
        v = _utc(value)
        if v < EPOCH:
            raise InvalidLeadData("timestamp before 1970", field=path + loc)
        if v > latest:
            raise InvalidLeadData(f"timestamp more than {max_future.days} day(s) in the future", field=path + loc)

    check(lead.created_at, ["created_at"])
    if lead.as_of is not None:
        check(lead.as_of, ["as_of"])
    for i, touch in enumerate(lead.touchpoints):
        check(touch.occurred_at, ["touchpoints", i, "occurred_at"])


def score_leads(
    serving: Serving,
    leads: list[LeadIn],
    threshold: Threshold,
    now: datetime,
    max_future: timedelta,
    explain: bool,
    batch: bool,
) -> list[ScoreOut]:
    """Score leads with the served model; each lead also at ``as_of - 7 days`` for its trend."""
    for i, lead in enumerate(leads):
        check_times(lead, now, max_future, ["body", "leads", i] if batch else ["body"])
    model = serving.loaded.model
    as_of = [_utc(lead.as_of) if lead.as_of else now for lead in leads]
    times = [(t, t - timedelta(days=TREND_DAYS)) for t in as_of]
    both = build_features_at(leads, times, model.spec).astype(np.float64)  # rows: lead 0 now, lead 0 before, ...
    n = len(leads)
    p_all = model.predict_proba(both)
    p, p_before = p_all[0::2], p_all[1::2]
    X = both[0::2]
    scores, scores_before = model.score(p), model.score(p_before)
    grades = threshold.cutoffs.grade(p)
    explanations = model.explain(X, [lead.attributes for lead in leads]) if explain else [None] * n
    version = serving.loaded.version
    out = []
    for i, lead in enumerate(leads):
        delta = int(scores[i]) - int(scores_before[i])
        trend = "rising" if delta >= TREND_POINTS else "falling" if delta <= -TREND_POINTS else "steady"
        e = explanations[i]
        out.append(
            ScoreOut(
                lead_id=lead.lead_id,
                probability=float(p[i]),
                score=int(scores[i]),
                grade=str(grades[i]),  # type: ignore[arg-type]
                qualified=bool(p[i] >= threshold.cutoffs.qualified),
                fit=e.fit if e else None,
                engagement=e.engagement if e else None,
                trend=trend,  # type: ignore[arg-type]
                reasons=[ReasonOut(feature=r.feature, description=r.description, impact=r.impact) for r in e.reasons]
                if e
                else [],
                model_version=version,
                threshold_version=threshold.version,
            )
        )
    return out
