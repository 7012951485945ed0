"""The drift report of the served model: counts of the last days (serving/drift_store.py) against the
model's reference (models/drift.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from models.drift import DRIFT_PSI, WARNING_PSI, DriftReference, compare
from models.scoring_model import ScoringModel
from serving.drift_store import LEADS, TOUCH_TYPES, UNSEEN, DriftStore
from serving.schemas import DayVolumeOut, FeatureDriftOut, MonitoringOut


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
    """Drift of the answers of the last ``days`` days (``today`` included) of one model version."""
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
            unseen_categories={},
            unseen_touch_share=None,
            reference_unseen_touch_share=None,
            volume=[],
        )
    frame = store.counts(version, window)
    sizes = {column: bins.size for column, bins in reference.columns()}
    counts: dict[str, np.ndarray] = {}
    summed = frame.groupby(["column", "bin"], as_index=False)["count"].sum()
    for column, b, n in zip(summed["column"].tolist(), summed["bin"].tolist(), summed["count"].tolist(), strict=True):
        size = sizes.get(str(column), 2)
        array = counts.setdefault(str(column), np.zeros(size, dtype=np.int64))
        if int(b) < size:
            array[int(b)] += int(n)
    leads = int(counts[LEADS][0]) if LEADS in counts else 0
    report = compare(reference, counts, min_scores, leads, min_leads)
    scored = frame[frame["column"] == "score"].groupby("day")["count"].sum()
    unseen = {attribute: _share(counts.get(UNSEEN + attribute)) for attribute in model.spec.categorical_attributes}
    return MonitoringOut(
        **common,
        status=report.status,  # type: ignore[arg-type]
        explanation=report.explanation
        if counting
        else "answers are not counted: the score log is off (LEADSCORE_SCORE_LOG=false)",
        scores=report.scores,
        leads=leads,
        score_psi=report.score.psi if report.score else None,
        score_level=report.score.level if report.score else None,  # type: ignore[arg-type]
        features=[FeatureDriftOut(feature=f.column, psi=f.psi, level=f.level) for f in report.features],  # type: ignore[arg-type]
        unseen_categories=unseen,
        unseen_touch_share=_share(counts.get(TOUCH_TYPES)),
        reference_unseen_touch_share=reference.unseen_touch_share,
        volume=[DayVolumeOut(day=d.isoformat(), scores=int(scored.get(d.isoformat(), 0))) for d in window],
    )


def _share(counts: np.ndarray | None) -> float | None:
    """Bin 1's share of a two-bin count (None when nothing was counted)."""
    if counts is None or counts.sum() <= 0:
        return None
    return float(counts[1] / counts.sum())
