"""The feedback loop's routes: outcomes and verdicts in, realised results out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from serving.deps import AnyRole, Served, require
from serving.drift_store import DriftStore
from serving.errors import InvalidLeadData
from serving.monitoring import monitoring_report
from serving.results_store import OutcomeRow, ResultsStore, utc
from serving.schemas import (
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    MonitoringOut,
    OutcomesIn,
    OutcomesOut,
    PerformanceOut,
)
from serving.store import Principal

router = APIRouter(prefix="/v1", tags=["results"])
CRM = Annotated[Principal, Depends(require("crm"))]
Sales = Annotated[Principal, Depends(require("sales"))]
ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ErrorOut} for status in (401, 403, 422)}


def _results(request: Request) -> ResultsStore:
    store: ResultsStore = request.app.state.results
    return store


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # as `leadscore outcomes import` reads exports


def _check_not_future(request: Request, times: list[datetime], path: str) -> None:
    """Close times must lie between 1970 and now (plus the allowed clock skew); each offending row is named
    (a time whose offset takes it outside year 1..9999 is out of range, not a 500)."""
    latest = datetime.now(UTC) + timedelta(days=request.app.state.settings.max_future_days)
    bad: list[tuple[list[str | int], str]] = []
    for i, t in enumerate(times):
        try:
            moment = utc(t)
        except OverflowError:
            bad.append((["body", path, i, "closed_at"], "timestamp out of range"))
            continue
        if moment > latest:
            bad.append((["body", path, i, "closed_at"], "timestamp in the future"))
        elif moment < EARLIEST:
            bad.append((["body", path, i, "closed_at"], "timestamp before 1970"))
    if bad:
        raise InvalidLeadData.listing(bad)


@router.post("/outcomes", response_model=OutcomesOut, responses=ERRORS)
def post_outcomes(request: Request, body: OutcomesIn, who: CRM) -> OutcomesOut:
    """Deals closed, won or lost (roles crm, admin), up to 10,000 per call.

    Idempotent: a row sent twice is stored once. A different row for a lead already known (a lost lead later
    won, a corrected date) is kept as a new row and the latest received counts. Lead ids never scored are
    stored all the same and reported.
    """
    _check_not_future(request, [o.closed_at for o in body.outcomes], "outcomes")
    rows = [OutcomeRow(o.lead_id, o.outcome, o.closed_at, o.amount) for o in body.outcomes]
    receipt = _results(request).add_outcomes(rows, source=f"api:{who.name}")
    return OutcomesOut(**receipt.__dict__)


@router.post("/feedback", response_model=FeedbackOut, responses=ERRORS)
def post_feedback(request: Request, body: FeedbackIn, who: Sales) -> FeedbackOut:
    """A salesperson's verdict on a lead handed over (roles sales, admin): accepted, rejected (with a reason
    from the fixed list) or recycled to marketing. Append-only: a later verdict on the same lead counts."""
    v = _results(request).add_verdict(who, body.lead_id, body.verdict, body.reason, body.note)
    return FeedbackOut(
        id=v.id,
        lead_id=v.lead_id,
        verdict=v.verdict,
        reason=v.reason,
        note=v.note,
        by=v.by_key,
        owner=v.owner,
        at=v.at,
        handed_over=v.handed_over_at is not None,
        handed_over_at=v.handed_over_at,
    )


@router.get("/performance", response_model=PerformanceOut, responses=ERRORS)
def get_performance(
    request: Request,
    _: AnyRole,
    start: Annotated[
        datetime | None, Query(alias="from", description="Hand-overs from (default: `performance_weeks` before to).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Hand-overs before this (default: now).")] = None,
    by: Annotated[
        Literal["week", "lead_source", "campaign", "model_version", "threshold_version"],
        Query(description="The cohorts."),
    ] = "week",
    as_of: Annotated[
        datetime | None, Query(description="Judge maturity and outcomes as known at this time (default: now).")
    ] = None,
) -> PerformanceOut:
    """Realised against expected results of the leads handed over (any role): per cohort, how many, sales'
    verdicts, realised precision with a 95% interval against the mean probability at hand-over, wins
    caught and missed, days to hand-over; cohorts still inside the horizon as maturing; calibration of
    first scores by decile. Definitions: models/performance.py."""
    settings = request.app.state.settings
    now = datetime.now(UTC)
    as_of_t = utc(as_of) if as_of else now
    end_t = utc(end) if end else as_of_t
    try:
        start_t = utc(start) if start else end_t - timedelta(weeks=settings.performance_weeks)
    except OverflowError:
        raise InvalidLeadData.listing([(["query", "to"], "too early: from would be before the year 1")]) from None
    if not start_t < end_t:
        raise InvalidLeadData.listing([(["query", "from"], "from must be before to")])
    current = request.app.state.holder.current
    horizon = int((current.loaded.model.meta.get("horizon_days") if current else None) or settings.horizon_days)
    report = _results(request).performance(horizon_days=horizon, start=start_t, end=end_t, as_of=as_of_t, by=by)
    return PerformanceOut.model_validate(report.to_dict())


@router.get("/monitoring", response_model=MonitoringOut, responses={**ERRORS, 503: {"model": ErrorOut}})
def get_monitoring(
    request: Request,
    serving: Served,
    _: AnyRole,
    days: Annotated[
        int | None, Query(ge=1, le=366, description="The window: the last N days, today included (UTC).")
    ] = None,
) -> MonitoringOut:
    """Drift of the served model (any role): PSI of the probabilities and of every feature served in the last
    days against the test window, in bins fixed at training. The verdict compares the leads scored on arrival
    (within an hour of creation) with the test leads at creation; every answer against every test scoring
    moment is given under ``all_answers``. Also shares of unseen categories and touch types and answers per
    day. Below ``min_scores`` leads scored on arrival the verdict is "not enough data". Definitions:
    models/drift.py."""
    settings = request.app.state.settings
    drift: DriftStore = request.app.state.drift
    return monitoring_report(
        drift,
        serving.loaded.model,
        serving.loaded.version,
        datetime.now(UTC).date(),
        days or settings.drift_days,
        settings.drift_min_scores,
        settings.drift_min_leads,
        settings.score_log,
    )
