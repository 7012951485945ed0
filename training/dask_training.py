"""``leadscore train --engine dask``: the examples, split and features built on a Dask cluster, partition by
partition (training/dask_engine.py), then the same fit, calibration, baselines, evaluation, MLflow run and
registration as the local engine (:func:`training.pipeline.fit_and_register`).

What differs from the local engine, and is logged with the run (params ``engine``, ``engine_*``, and the
model's ``meta["engine"]``):

* **Sampling of the train window.** When it has more than ``max_train_examples`` scoring moments, every
  positive (won) moment is kept and the negative ones are kept with probability ``(max_train_examples -
  positives) / negatives``; when positives alone pass half the cap, half the cap is drawn from each class
  (a class short of its half is kept whole); no share is under 1%. Each kept moment weighs ``1 / (its
  class's share)`` more, so that weighted sums over the train window (and the fit's loss) are unbiased
  estimates of the unsampled ones (Horvitz-Thompson weighting; King and Zeng (2001), "Logistic Regression
  in Rare Events Data", Political Analysis 9(2)). The calibration and test windows are not sampled by
  class: the calibration is fitted, and the test metrics computed, on windows whose classes are not
  reweighted, so probabilities and figures keep their meaning. We chose this over
  LightGBM's Dask interface (``lightgbm.DaskLGBMClassifier``): it fits one model on the whole data but
  needs every worker to hold its share of the matrix through the whole fit and gives up the candidate
  search, the early stopping on a lead-grouped half of the calibration window and the baselines, which
  the sampled matrix keeps on one machine (a 1M-lead run's matrix is about 1 GiB at the default cap).
* **Lead sampling of the calibration and test windows.** A window with more than ``max_window_examples``
  scoring moments keeps a uniform sample of its leads (by a keyed hash of the lead id), every moment of a
  kept lead: no label enters the choice, so the calibration and the test figures (per scoring moment, and per lead at
  first score) stay unbiased, with intervals that count the leads kept.
* **The creation-time baseline** is fitted, when the train window was sampled, on the kept creation
  moments weighted by 1 / their class's share kept (a lead's first kept moment is often not its creation).
* **The leakage audit** learns from the train leads with a kept moment; each counts as won when it was won
  at any of its moments before sampling (column :data:`training.pipeline.LEAD_WON`), so a won lead whose won
  moments were all left out is still won. A lead is kept when any of its moments is drawn, so the kept
  leads lean towards the won ones and, within a class, towards leads with more moments: figures within a
  class move a little (on 5,000 demo leads sampled to 1,000 moments, the lost leads' moments per lead went
  from 4.1 to about 5.3 and a fill rate from 0.70 to 0.68). The calibration window it scores is not sampled
  by class. ``engine_train_leads_before_sampling`` gives the train leads before.
* **The fingerprint** sums the partitions' counts; its ``sha256`` is over the partitions' own digests in
  partition order (the same data in the same number of partitions give the same value; it is not the
  local engine's hash of the same data).
* **Validation messages** give row numbers within a partition, not within the file.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.data import DataIssue, DataValidationError, export_time
from training.pipeline import (
    DataSource,
    NotEnoughData,
    Prepared,
    Progress,
    Split,
    TrainConfig,
    TrainResult,
    check_windows,
    fit_and_register,
)

if TYPE_CHECKING:
    from distributed import Client

    from features.spec import FeatureSpec
    from training.dask_engine import PartitionSummary

# The fit runs in one process on the three windows' matrix: at these caps (about 3M scoring moments in all)
# that process stays under 8 GiB at 10M leads (benchmarks/scale.py, README); at 1M demo leads no window is
# sampled, so the model is the local engine's.
MAX_TRAIN_EXAMPLES = 1_000_000
MAX_WINDOW_EXAMPLES = 1_000_000
MIN_KEEP = 0.01


def keep_shares(positives: int, negatives: int, max_train_examples: int) -> tuple[float, float]:
    """The shares of train positives and negatives kept so that about ``max_train_examples`` train moments
    are fitted: all when they fit; else every positive and the negatives that fill the rest while positives
    are at most half of it; else half positives, half negatives (a class that is short of its half is kept
    whole). Never under ``MIN_KEEP``."""
    total, half = positives + negatives, max_train_examples / 2
    if total <= max_train_examples:
        return 1.0, 1.0
    if positives <= half:
        return 1.0, float(max(MIN_KEEP, (max_train_examples - positives) / negatives))
    if negatives <= half:
        return float(max(MIN_KEEP, (max_train_examples - negatives) / positives)), 1.0
    return float(max(MIN_KEEP, half / positives)), float(max(MIN_KEEP, half / negatives))


def _window_counts(piece: pd.DataFrame) -> tuple[int, int, int, int]:
    """Train positives, train negatives, calibration and test moments of a partition."""
    if not len(piece):
        return 0, 0, 0, 0
    window = piece["window"]
    train = piece.loc[window == "train", "label"]
    return (
        int((train == 1).sum()),
        int((train == 0).sum()),
        int((window == "calibration").sum()),
        int((window == "test").sum()),
    )


def _test_features(
    piece: pd.DataFrame, touches: pd.DataFrame | None, spec: Any, columns: list[str], share: float, lead_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A partition's test-window features under ``spec`` (another model's), of the leads the training matrix
    kept (``share`` of them, as :func:`training.dask_engine._window_features` samples), with each row's
    lead :data:`ORDER` (the caller puts them in the training matrix's order)."""
    from features import build_features
    from training.dask_engine import ORDER, lead_sample

    test = piece.loc[piece["window"] == "test"] if len(piece) else piece
    if len(test) and share < 1.0:
        test = test.loc[lead_sample(test["lead_id"], share, lead_seed)]
    if not len(test):
        return np.zeros((0, len(spec.feature_names)), dtype=np.float32), np.zeros(0, dtype=np.int64)
    X = build_features(test[columns], touches, test["as_of"], spec).to_numpy(dtype=np.float32)
    return X, test[ORDER].to_numpy(dtype=np.int64)


def train_on_dask(
    client: Client,
    config: TrainConfig,
    progress: Progress = lambda _: None,
    *,
    max_train_examples: int = MAX_TRAIN_EXAMPLES,
    max_window_examples: int = MAX_WINDOW_EXAMPLES,
    leads_per_partition: int = 100_000,
) -> TrainResult:
    """:func:`training.pipeline.train` with the examples, split and features built on the cluster of
    ``client`` from a data directory of Parquet tables (folders of parts or single files).

    Raises:
        DataValidationError: the directory is not Parquet tables, a required table or an excluded column is
            missing, no valid lead is left, or (``config.strict``) a row breaks the contract.
        NotEnoughData: as the local engine (too few leads of a class, data too short for the split).
        ValueError: an option the Dask engine does not take (a flat export, ``--outcomes-file``).
    """
    notes: list[str] = []
    try:
        return _train_on_dask(
            client, config, progress, notes, max_train_examples, max_window_examples, leads_per_partition
        )
    except NotEnoughData as err:
        err.notes = notes
        raise


def _train_on_dask(
    client: Client,
    config: TrainConfig,
    progress: Progress,
    notes: list[str],
    max_train_examples: int,
    max_window_examples: int,
    leads_per_partition: int,
) -> TrainResult:
    import dask

    from training.dask_engine import (
        ORDER,
        examples_dataset,
        merge_reports,
        read_tables,
        split_dataset,
        training_matrix,
    )

    started = time.perf_counter()
    if config.flat is not None:
        raise ValueError("--engine dask reads a data directory of Parquet tables, not a flat export")
    if config.extra_outcomes is not None:
        raise ValueError("--engine dask does not take --outcomes-file (retraining runs on the local engine)")
    data_dir = Path(config.data)
    progress("reading the Parquet tables and validating them partition by partition")
    leads_columns = list(read_tables(data_dir)["leads"].columns)
    missing = [c for c in config.exclude_columns if c not in leads_columns or c in ("lead_id", "created_at")]
    if missing:
        raise DataValidationError(
            [
                DataIssue(str(data_dir / "leads"), None, c, "excluded column does not exist or is a key column")
                for c in missing
            ]
        )
    data_end = None if config.data_end is None else export_time(config.data_end, None, config.inputs.time.timezone)
    built = examples_dataset(data_dir, config, data_end=data_end, leads_per_partition=leads_per_partition)
    progress(f"taking scoring moments and labels in {built.partitions} partitions; the purged time split")
    bounds, pieces = split_dataset(built, config)
    pieces, touches, summaries = dask.persist(pieces, built.touches, built.summaries)
    # the examples' pieces (their graphs hold the validated partitions, kept on the workers) are not needed
    # past this point: dropping them lets the workers free the validated tables once these are in memory
    built = replace(built, pieces=[], touches=list(touches), summaries=list(summaries))
    parts: list[PartitionSummary] = list(dask.compute(*built.summaries))
    report = merge_reports([p.report for p in parts])
    report.formats = {f"{data_dir}/{name}": "Parquet (Dask engine)" for name in read_tables(data_dir)}
    notes += report.reading_lines() + report.notes + report.lines()
    if config.strict and report.dropped:
        raise DataValidationError(
            [issue for bucket in report.examples.values() for issue in bucket]
            or [DataIssue(str(data_dir), None, None, f"{report.dropped} rows break the contract")]
        )
    counts = dask.compute(*(dask.delayed(_window_counts)(p) for p in pieces))
    positives, negatives = sum(c[0] for c in counts), sum(c[1] for c in counts)
    keep_positive, keep = keep_shares(positives, negatives, max_train_examples)
    keep_leads = {}
    for name, rows_in in (("calibration", sum(c[2] for c in counts)), ("test", sum(c[3] for c in counts))):
        if rows_in > max_window_examples:
            keep_leads[name] = max_window_examples / rows_in
            notes.append(
                f"Dask engine: the {name} window has {rows_in:,} scoring moments; a uniform sample of "
                f"{keep_leads[name]:.1%} of its leads (all their moments) is used"
            )

    progress("building point-in-time features partition by partition")
    matrix = training_matrix(
        built,
        pieces,
        config,
        keep_negatives=keep,
        keep_positives=keep_positive,
        seed=config.seed,
        keep_leads=keep_leads,
    )
    window = matrix.rows["window"].to_numpy()
    order = matrix.rows[ORDER].to_numpy()

    def local_order(rows_in: np.ndarray) -> np.ndarray:
        """Positions of a window in the local engine's order: its leads as read, each lead's moments in time."""
        return rows_in[np.lexsort((rows_in, order[rows_in]))]

    # each window's rows in the local engine's order, the windows one after the other: the fit then takes
    # each window's features as a view, not a copy (training.pipeline.window_rows)
    ordered = [local_order(np.flatnonzero(window == name)) for name in ("train", "calibration", "test")]
    permutation = np.concatenate(ordered)
    rows = matrix.rows.iloc[permutation].reset_index(drop=True)
    X = np.take(matrix.X, permutation, axis=0)
    matrix = replace(matrix, rows=rows.iloc[:0], X=X[:0])  # the collected frames are no longer held twice
    ends = np.cumsum([0, *(len(o) for o in ordered)])
    split = Split(
        "time",
        np.arange(ends[0], ends[1]),
        np.arange(ends[1], ends[2]),
        np.arange(ends[2], ends[3]),
        windows=bounds.windows(config.horizon_days),
        weight=rows["weight"].to_numpy(dtype=np.float64),
    )
    w = split.windows
    notes.append(
        f"purged time split: train leads created {w['train_leads_created']}, calibration "
        f"{w['calibration_leads_created']}, test {w['test_leads_created']} (each test lead followed for its "
        f"first {bounds.follow_days} days); gaps of one horizon between the windows"
    )
    if keep < 1.0 or keep_positive < 1.0:
        notes.append(
            f"Dask engine: train moments sampled past --max-train-examples {max_train_examples:,}: "
            f"{negatives:,} negative ones sampled at {keep:.4f} (each kept one weighs {1 / keep:.2f}), "
            f"{positives:,} positive ones at {keep_positive:.4f} (weighing {1 / keep_positive:.2f})"
        )
    check_windows(
        rows["lead_id"], rows["label"].to_numpy(), split, config, f"the end of the data is {built.data_end}; "
    )

    columns = built.lead_columns

    def test_features(spec: FeatureSpec) -> np.ndarray:
        """The test window's features under another model's spec (the champion's, for the promotion gate),
        row for row as ``split.test``: the same sampled leads, in the local engine's order."""
        share = keep_leads.get("test", 1.0)
        made = dask.compute(
            *(
                dask.delayed(_test_features)(p, t, spec, columns, share, config.seed)
                for p, t in zip(pieces, built.touches, strict=True)
            )
        )
        if not made:
            return np.zeros((0, len(spec.feature_names)), dtype=np.float32)
        X_test = np.concatenate([m[0] for m in made])
        # the partitions' rows in partition order, a lead's moments in time: a stable sort by lead order gives
        # the local engine's order, as local_order does for the training matrix
        return X_test[np.argsort(np.concatenate([m[1] for m in made]), kind="stable")]

    created = [p.created_min for p in parts if p.created_min is not None]
    latest = [p.created_max for p in parts if p.created_max is not None]
    digest = hashlib.sha256("".join(p.digest for p in parts).encode()).hexdigest()
    fingerprint: dict[str, object] = {
        "leads": sum(p.leads for p in parts),
        "touchpoints": sum(p.touchpoints for p in parts),
        "outcomes": sum(p.outcomes for p in parts),
        "wins": sum(p.wins for p in parts),
        "leads_from": str(min(created)) if created else None,
        "leads_to": str(max(latest)) if latest else None,
        "data_end": str(built.data_end),
        "sha256": digest,
        "dropped_rows": report.dropped,
    }
    source = DataSource(
        has_time=True,
        flat=None,
        excluded_columns=tuple(config.exclude_columns),
        report=report,
        lead_columns=columns,
        fingerprint=fingerprint,
        end_time=built.data_end,
        n_leads=int(fingerprint["leads"]),  # type: ignore[call-overload]
        weekly_new_leads=np.sum([p.weekly_new_leads for p in parts], axis=0),
        test_features=test_features,
        engine={
            "engine": "dask",
            "partitions": built.partitions,
            "workers": len(client.scheduler_info().get("workers", {})),
            "keep_negatives": keep,
            "keep_positives": keep_positive,
            "max_train_examples": max_train_examples,
            "train_examples_before_sampling": matrix.before_sampling.get("train", 0),
            "train_leads_before_sampling": matrix.before_sampling.get("train_leads", 0),
            "max_window_examples": max_window_examples,
            "calibration_leads_kept": keep_leads.get("calibration", 1.0),
            "test_leads_kept": keep_leads.get("test", 1.0),
            "fit": "one process: LightGBM on the train window, sampled by class past max_train_examples (each kept "
            "moment weighted by 1 / its class's share kept)",
        },
    )
    prepared = Prepared(rows, split, matrix.spec, X, source)
    return fit_and_register(config, prepared, progress, notes, started)
