"""Batch scoring of every open lead of a dataset, streamed in chunks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import build_features
from models.scoring_model import GradeCutoffs, ScoringModel
from training.data import CRMData

CHUNK_LEADS = 50_000
SCORE_COLUMNS = ("lead_id", "as_of", "probability", "score", "grade", "qualified")


@dataclass(frozen=True)
class ScoreSummary:
    scored: int
    skipped_closed: int
    skipped_not_yet_created: int
    qualified: int
    out: Path


def open_leads(data: CRMData, as_of: pd.Timestamp) -> tuple[pd.DataFrame, int, int]:
    """Leads created by ``as_of`` and not closed at or before it; also counts of those left out."""
    leads = data.leads
    closed_at = leads["lead_id"].map(data.outcomes.set_index("lead_id")["closed_at"])
    closed = (closed_at <= as_of).fillna(False).to_numpy(dtype=bool)
    if data.has_time:
        not_created = (leads["created_at"] > as_of).to_numpy()
    else:  # a flat export: no times, so every lead in the file is scored
        not_created = np.zeros(len(leads), dtype=bool)
        closed = np.zeros(len(leads), dtype=bool)
    keep = ~closed & ~not_created
    return leads.loc[keep], int(closed.sum()), int((not_created & ~closed).sum())


def score_chunks(
    model: ScoringModel,
    leads: pd.DataFrame,
    touchpoints: pd.DataFrame | None,
    as_of: pd.Timestamp,
    cutoffs: GradeCutoffs,
    reasons: bool = True,
    chunk: int = CHUNK_LEADS,
    provenance: dict[str, str | int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score leads chunk by chunk; touches are sliced per chunk so memory stays flat.

    ``provenance`` (e.g. ``model_version``, ``threshold_version``) is added as constant columns after
    ``qualified``, so that a scores file names the model and the cut-offs that made it.
    """
    touches_by_lead = None
    if touchpoints is not None and len(touchpoints):
        touches_by_lead = touchpoints.sort_values("lead_id", kind="stable").reset_index(drop=True)
        keys = touches_by_lead["lead_id"].to_numpy()
    lead_cols = list(leads.columns)
    for start in range(0, len(leads), chunk):
        part = leads.iloc[start : start + chunk]
        touches = None
        if touches_by_lead is not None:
            ids = np.sort(part["lead_id"].to_numpy())
            lo = np.searchsorted(keys, ids, side="left")
            hi = np.searchsorted(keys, ids, side="right")
            ranges = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
            idx = np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)
            touches = touches_by_lead.iloc[idx]
        X = build_features(part[lead_cols], touches, as_of, model.spec).to_numpy(dtype=np.float64)
        p = model.predict_proba(X)
        out = _scores(part["lead_id"].to_numpy(), as_of, p, model, cutoffs, provenance)
        if reasons:
            attrs: list[dict[str, Any]] = part.drop(columns=["lead_id", "created_at"]).to_dict("records")  # type: ignore[assignment]
            explained = model.explain(X, attrs)
            out["fit"] = [e.fit for e in explained]
            out["engagement"] = [e.engagement for e in explained]
            out["reasons"] = [
                json.dumps(
                    [{"feature": r.feature, "description": r.description, "impact": r.impact} for r in e.reasons]
                )
                for e in explained
            ]
        yield out


def _scores(
    lead_ids: np.ndarray,
    as_of: pd.Timestamp,
    p: np.ndarray,
    model: ScoringModel,
    cutoffs: GradeCutoffs,
    provenance: dict[str, str | int] | None,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": lead_ids,
            "as_of": as_of,
            "probability": p,
            "score": model.score(p),
            "grade": cutoffs.grade(p),
            "qualified": p >= cutoffs.qualified,
            **(provenance or {}),
        }
    )


def empty_scores(
    model: ScoringModel,
    as_of: pd.Timestamp,
    cutoffs: GradeCutoffs,
    reasons: bool = True,
    provenance: dict[str, str | int] | None = None,
) -> pd.DataFrame:
    """No row, with the columns and types of :func:`score_chunks`' frames (built as they are, then emptied):
    a scores file written from it when every lead is closed has the columns of a full one."""
    out = _scores(np.array(["-"], dtype=object), as_of, np.array([0.5]), model, cutoffs, provenance)
    if reasons:
        out["fit"], out["engagement"], out["reasons"] = [0], [0], ["[]"]
    return out.iloc[:0]


def write_scores(
    chunks: Iterator[pd.DataFrame],
    out: Path,
    on_chunk: Callable[[int], None] = lambda _: None,
    empty: pd.DataFrame | None = None,
) -> tuple[int, int]:
    """Stream chunks to CSV or Parquet (by extension); returns (rows, qualified). With no chunk, ``empty``
    (:func:`empty_scores`: no row, the columns of a full file) is written, else a CSV header of the first
    columns: the file is there, with its columns, when no lead is open."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = qualified = 0
    writer: pq.ParquetWriter | None = None
    try:
        for i, frame in enumerate(chunks):
            if out.suffix == ".parquet":
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                writer.write_table(table)
            else:
                frame.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
            rows += len(frame)
            qualified += int(frame["qualified"].sum())
            on_chunk(len(frame))
    finally:
        if writer is not None:
            writer.close()
    if rows == 0:
        frame = empty if empty is not None else pd.DataFrame(columns=SCORE_COLUMNS)
        if out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
    return rows, qualified
