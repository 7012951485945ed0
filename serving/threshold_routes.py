"""Threshold routes: the policy in force, the trade-off, proposals, decisions and history."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from models.threshold_analysis import CutoffAnalysis, Unreachable
from serving.deps import AnyRole, Served, require
from serving.errors import Conflict, InvalidLeadData, TargetUnreachable
from serving.model_source import Serving
from serving.schemas import (
    AnalysisOut,
    CurveOut,
    DecisionIn,
    ErrorOut,
    HistoryOut,
    PolicyOut,
    ProposalIn,
    ThresholdOut,
)
from serving.store import Principal
from serving.thresholds import Grades, Policy

router = APIRouter(prefix="/v1/threshold", tags=["threshold"])
log = logging.getLogger("leadscore.serving")
Side = Annotated[Principal, Depends(require("marketing", "sales", admin=False))]


def policy_out(p: Policy) -> PolicyOut:
    return PolicyOut(
        version=p.id,
        model_name=p.model_name,
        model_version=p.model_version,
        cutoff=p.cutoff,
        grades={"a": p.grades.a, "b": p.grades.b, "c": p.grades.c},
        status=p.status,  # type: ignore[arg-type]
        proposed_by=p.proposed_by,
        proposed_role=p.proposed_role,
        proposed_owner=p.proposed_owner,
        reason=p.reason,
        origin=p.origin,
        created_at=p.created_at,
        activated_at=p.activated_at,
        decisions=p.decisions,  # type: ignore[arg-type]
    )


def analysis_out(a: CutoffAnalysis, version: str) -> AnalysisOut:
    return AnalysisOut(**a.to_dict(), model_version=version)  # type: ignore[arg-type]


@router.get("", response_model=ThresholdOut)
def threshold(request: Request, serving: Served, _: AnyRole) -> ThresholdOut:
    """The active policy and the cut-offs in force for the served model (any role)."""
    force = request.app.state.in_force(serving)
    c = force.cutoffs
    return ThresholdOut(
        policy=policy_out(force.policy) if force.policy else None,
        threshold_version=force.version,
        model_version=serving.loaded.version,
        cutoff=c.qualified,
        grades={"a": c.a, "b": c.b, "c": c.c},
        mapped_from_model_version=force.mapped_from_model_version,
        approved=force.approved,
        in_force=policy_out(force.applied) if force.applied else None,
        explanation=force.explanation,
        pending=[policy_out(p) for p in force.pending],
    )


@router.get("/analysis", response_model=AnalysisOut)
def analysis(
    request: Request,
    serving: Served,
    _: AnyRole,
    cutoff: Annotated[float | None, Query(gt=0, lt=1, description="Figures at this cut-off.")] = None,
    leads_per_week: Annotated[float | None, Query(gt=0, le=1e9, description="The cut-off for this capacity.")] = None,
    min_precision: Annotated[float | None, Query(gt=0, le=1, description="The cut-off for this precision.")] = None,
    min_recall: Annotated[float | None, Query(gt=0, le=1, description="The cut-off for this recall.")] = None,
) -> AnalysisOut:
    """The replayed trade-off at one cut-off, in leads, with 95% intervals over leads.

    Leads handed over per week and their share, precision, recall, expected wins per week, lift and median days
    to hand-over. Give the cut-off, or ask for one: the lowest within a capacity (leads per week), the lowest
    reaching a precision, the highest reaching a recall. A precision or recall no cut-off reaches is a 422
    naming the field, with the best reachable value in ``ctx``.
    """
    given = {
        k: v
        for k, v in {
            "cutoff": cutoff,
            "leads_per_week": leads_per_week,
            "min_precision": min_precision,
            "min_recall": min_recall,
        }.items()
        if v is not None
    }
    if len(given) != 1:
        raise InvalidLeadData("give exactly one of cutoff, leads_per_week, min_precision, min_recall", field=["query"])
    trade = request.app.state.tradeoff(serving.loaded.version)
    ((name, value),) = given.items()
    try:
        chosen = {
            "cutoff": lambda v: v,
            "leads_per_week": trade.cutoff_for_capacity,
            "min_precision": trade.cutoff_for_precision,
            "min_recall": trade.cutoff_for_recall,
        }[name](value)
    except Unreachable as err:
        raise TargetUnreachable(
            f"{name}={value:g} is unreachable: {err}", ["query", name], err.best, err.best_cutoff
        ) from err
    return analysis_out(trade.analyze(chosen), serving.loaded.version)


@router.get("/curve", response_model=CurveOut)
def curve(request: Request, serving: Served, _: AnyRole) -> CurveOut:
    """The whole trade-off table, for plotting."""
    trade = request.app.state.tradeoff(serving.loaded.version)
    return CurveOut(
        model_version=serving.loaded.version, points=[analysis_out(a, serving.loaded.version) for a in trade.curve()]
    )


@router.get("/history", response_model=HistoryOut)
def history(request: Request, _: AnyRole) -> HistoryOut:
    """Every policy ever proposed, oldest first, with its decisions (append-only)."""
    return HistoryOut(policies=[policy_out(p) for p in request.app.state.threshold_store.history()])


def champion_version(request: Request, serving: Serving) -> str:
    """The version the registry names champion now (blocking), else the one this process serves.

    With several workers, a worker still serving the previous champion for a few seconds after a promotion must
    neither take proposals for it nor approve by it.
    """
    try:
        return request.app.state.champion_version() or serving.loaded.version
    except Exception:  # the registry is unreachable: this process's model is the best knowledge
        log.warning("could not read the champion alias; deciding by the served version", exc_info=True)
        return serving.loaded.version


@router.post("/proposals", response_model=PolicyOut, status_code=201, responses={409: {"model": ErrorOut}})
def propose(body: ProposalIn, request: Request, serving: Served, who: Side) -> PolicyOut:
    """Propose a cut-off for the served model (marketing or sales); the other side decides. 409 while this
    server process still serves a model that is no longer champion (a few seconds after a promotion)."""
    champion = champion_version(request, serving)
    if champion != serving.loaded.version:
        raise Conflict(
            f"model version {champion} is champion now and this server process still serves version "
            f"{serving.loaded.version}: retry in a few seconds"
        )
    current = request.app.state.in_force(serving).cutoffs
    grades = (
        Grades(body.grades.a, body.grades.b, body.grades.c) if body.grades else Grades(current.a, current.b, current.c)
    )
    policy = request.app.state.threshold_store.propose(
        who, serving.loaded.name, serving.loaded.version, body.cutoff, grades, body.reason
    )
    request.app.state.refresh_thresholds(serving.loaded)  # the pending list shows it at once
    return policy_out(policy)


def _decide(
    request: Request, serving: Serving, policy_id: int, who: Principal, approve: bool, reason: str
) -> PolicyOut:
    served = champion_version(request, serving)
    policy = request.app.state.threshold_store.decide(policy_id, who, approve, reason, served)
    # This process applies it at once; the others within the refresh interval.
    request.app.state.refresh_thresholds(serving.loaded)
    return policy_out(policy)


PolicyId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/proposals/{policy_id}/approve", response_model=PolicyOut)
def approve(
    policy_id: PolicyId, request: Request, serving: Served, who: Side, body: DecisionIn | None = None
) -> PolicyOut:
    """Approve (the other side only); the policy is active at once. 409 for a proposal made for a model version
    that is not the champion, or one mapping a policy that is no longer the agreed one; 503 with no model."""
    return _decide(request, serving, policy_id, who, True, body.reason if body else "")


@router.post("/proposals/{policy_id}/reject", response_model=PolicyOut)
def reject(
    policy_id: PolicyId, request: Request, serving: Served, who: Side, body: DecisionIn | None = None
) -> PolicyOut:
    """Reject (the other side only)."""
    return _decide(request, serving, policy_id, who, False, body.reason if body else "")
