"""The drift report of the served model: counts of the last days (serving/drift_store.py) against the
model's reference (models/drift.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from models.drift import DRIFT_PSI, VERDICT_KINDS, WARNING_PSI, DriftReference, DriftReport, compare
from models.scoring_model import ScoringModel
from serving.drift_store import ARRIVAL, LEADS, TOUCH_TYPES, UNSEEN, DriftStore
from serving.schemas import AllAnswersDriftOut, DayVolumeOut, FeatureDriftOut, MonitoringOut


def monitoring_report(
    store: DriftStore,
    model: ScoringModel,
    version: str,
    today: date,
    days: int,
    min_scores: int,
    min_leads: int = 0,
    counting: bool = True,
) -> MonitoringOut:
    """Drift of the answers of the last ``days`` days (``today`` included) of one model version.

    The verdict compares the leads scored on arrival with the test leads at their creation (one per lead, at
    the same age: it does not depend on the CRM's schedule); the all-answers figures (every answer against
    every test scoring moment) are given for reading. A model trained before on-arrival shares were kept is
    judged on all answers, as before, and the explanation says so."""
    window = [today - timedelta(days=k) for k in range(days - 1, -1, -1)]
    common: dict[str, Any] = {
        "model_version": version,
        "days": days,
        "start_day": window[0].isoformat(),
        "end_day": window[-1].isoformat(),
        "min_scores": min_scores,
        "min_leads": min_leads,
        "levels": {"warning": WARNING_PSI, "drift": DRIFT_PSI},
    }
    reference = DriftReference.from_dict(model.meta.get("drift_reference"))
    if reference is None:
        return MonitoringOut(
            **common,
            status="no reference",
            explanation="this model version was trained before drift references were kept: retrain to monitor it",
            scores=0,
            leads=0,
            score_psi=None,
            score_level=None,
            features=[],
            arrivals=0,
            on_arrival=False,
            all_answers=None,
            unseen_categories={},
            unseen_touch_share=None,
            reference_unseen_touch_share=None,
            volume=[],
        )
    frame = store.counts(version, window)
    sizes = {column: bins.size for column, bins in reference.columns()}
    sizes.update({ARRIVAL + column: size for column, size in sizes.items()})  # the on-arrival counts: same bins
    counts: dict[str, np.ndarray] = {}
    summed = frame.groupby(["column", "bin"], as_index=False)["count"].sum()
    for column, b, n in zip(summed["column"].tolist(), summed["bin"].tolist(), summed["count"].tolist(), strict=True):
        size = sizes.get(str(column), 2)
        array = counts.setdefault(str(column), np.zeros(size, dtype=np.int64))
        if int(b) < size:
            array[int(b)] += int(n)
    leads = int(counts[LEADS][0]) if LEADS in counts else 0
    everything = compare(reference, counts, min_scores, leads, min_leads)
    arrival_counts = {k[len(ARRIVAL) :]: v for k, v in counts.items() if k.startswith(ARRIVAL)}
    arrivals = int(arrival_counts["score"].sum()) if "score" in arrival_counts else 0
    on_arrival = reference.arrival is not None
    touch = frozenset(i.name for i in model.spec.feature_infos() if i.kind not in VERDICT_KINDS)
    report = (
        compare(reference, arrival_counts, min_scores, on_arrival=True, leave_out=touch) if on_arrival else everything
    )
    explanation = report.explanation
    if not on_arrival and not model.meta.get("scoring_moments", {}).get("at_creation", True):
        explanation += (
            "; judged on all answers, which depend on when the CRM asks: this model was trained without creation "
            "moments (--moments), so it has no reference on arrival"
        )
    elif not on_arrival:
        explanation += "; judged on all answers: this model was trained before on-arrival references (retrain)"
    elif report.status == "not enough data" and everything.status != "not enough data":
        explanation += (
            f" (a CRM that scores leads as they arrive gives one per lead); all answers: {everything.explanation}"
        )
    scored = frame[frame["column"] == "score"].groupby("day")["count"].sum()
    unseen = {attribute: _share(counts.get(UNSEEN + attribute)) for attribute in model.spec.categorical_attributes}
    return MonitoringOut(
        **common,
        status=report.status,  # type: ignore[arg-type]
        explanation=explanation
        if counting
        else "answers are not counted: the score log is off (LEADSCORE_SCORE_LOG=false)",
        scores=everything.scores,
        leads=leads,
        score_psi=report.score.psi if report.score else None,
        score_level=report.score.level if report.score else None,  # type: ignore[arg-type]
        features=_features(report),
        arrivals=arrivals,
        on_arrival=on_arrival,
        all_answers=AllAnswersDriftOut(
            status=everything.status,  # type: ignore[arg-type]
            explanation=everything.explanation,
            score_psi=everything.score.psi if everything.score else None,
            score_level=everything.score.level if everything.score else None,  # type: ignore[arg-type]
            features=_features(everything),
        ),
        unseen_categories=unseen,
        unseen_touch_share=_share(counts.get(TOUCH_TYPES)),
        reference_unseen_touch_share=reference.unseen_touch_share,
        volume=[DayVolumeOut(day=d.isoformat(), scores=int(scored.get(d.isoformat(), 0))) for d in window],
    )


def _features(report: DriftReport) -> list[FeatureDriftOut]:
    return [FeatureDriftOut(feature=f.column, psi=f.psi, level=f.level) for f in report.features]  # type: ignore[arg-type]


def _share(counts: np.ndarray | None) -> float | None:
    """Bin 1's share of a two-bin count (None when nothing was counted)."""
    if counts is None or counts.sum() <= 0:
        return None
    return float(counts[1] / counts.sum())
