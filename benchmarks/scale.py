"""Scale benchmark of the Dask engine: time per stage and peak memory per process.

Run by hand:  .venv/bin/python benchmarks/scale.py --leads 1000000 [--engine dask] [--scheduler tcp://...]

Stages (each timed; the peak resident memory of this process and of every Dask worker is read after each):
  demo-data   N demo leads written as folders of Parquet parts by the workers (engine dask) or one process
  examples    the labelled scoring moments, partition by partition, and the purged time split (kept on the
              workers, as a training run would keep them, for the next stage)
  matrix      the features of the three windows (spec from the train window), train negatives sampled
              (--keep-negatives), collected to this process
  fit         LightGBM on the collected matrix (the local pipeline's candidate search is not run here)
  score       every open lead scored by a champion trained locally on 20,000 demo leads, written as Parquet
              parts

`train --engine dask` (the whole pipeline: selection, calibration, baselines, MLflow, registry) is not built
yet: the fit stage measures the part that matters for memory, the collected matrix and one booster.
With --engine local the same data go through the local engine's score command, for comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def own_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def worker_peaks(client: object) -> list[float]:
    """Peak resident memory (GiB) of each worker process since it started."""

    def peak() -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    return sorted(client.run(peak).values())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("dask", "local"), default="dask")
    parser.add_argument("--scheduler", default=None, help="A running scheduler (default: a LocalCluster).")
    parser.add_argument("--keep-negatives", type=float, default=0.25, help="Share of train negatives kept.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to write the data (default: a tmp dir).")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-scale-"))
    home = work / "home"
    env = {**os.environ, "LEADSCORE_HOME": str(home), "LEADSCORE_LOG_LEVEL": "warning"}
    env.pop("MLFLOW_TRACKING_URI", None)
    print(f"work dir {work}; champion: 20,000 demo leads trained locally", flush=True)
    subprocess.run([BIN / "leadscore", "demo-data", "--out", work / "small"], env=env, check=True, capture_output=True)
    subprocess.run(
        [BIN / "leadscore", "train", "--data", work / "small", "--promote"], env=env, check=True, capture_output=True
    )
    os.environ.update(LEADSCORE_HOME=str(home))
    rows: list[tuple[str, float, str]] = []

    if args.engine == "local":
        for name, command in (
            ("demo-data", ["demo-data", "--out", str(work / "big"), "--leads", str(args.leads)]),
            ("score", ["score", "--data", str(work / "big"), "--out", str(work / "scores.parquet"), "--no-reasons"]),
        ):
            start = time.perf_counter()
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%M", BIN / "leadscore", *command], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-2000:]}")
            peak = int(proc.stderr.strip().splitlines()[-1]) / 1024**2
            rows.append((name, time.perf_counter() - start, f"process {peak:.2f} GiB"))
            print(f"{name}: {rows[-1][1]:.0f} s, {rows[-1][2]}", flush=True)
        report(args, rows)
        return

    import pandas as pd

    from leadscore.settings import get_settings
    from models.registry import configure_tracking, load_champion
    from training.dask_engine import (
        dask_client,
        examples_dataset,
        score_dataset,
        split_dataset,
        training_matrix,
        write_demo_data_dask,
    )
    from training.pipeline import TrainConfig, lightgbm_params

    settings = get_settings()
    configure_tracking(settings.resolved_tracking_uri)
    champion = load_champion(settings.model_name, settings.model_alias, settings.model_cache_dir)
    with dask_client(args.scheduler, say=print) as client:

        def stage(name: str, started: float) -> None:
            peaks = worker_peaks(client)
            where = f"this process {own_peak_gib():.2f} GiB; workers " + ", ".join(f"{p:.2f}" for p in peaks) + " GiB"
            rows.append((name, time.perf_counter() - started, where))
            print(f"{name}: {rows[-1][1]:.0f} s; peak {where}", flush=True)

        start = time.perf_counter()
        counts = write_demo_data_dask(client, work / "big", args.leads)
        stage(f"demo-data ({counts['leads']:,} leads, {counts['touchpoints']:,} touches)", start)

        config = TrainConfig(data=work / "big")
        start = time.perf_counter()
        import dataclasses

        import dask

        built = examples_dataset(work / "big", config)
        n = len(built.pieces)
        kept = dask.persist(*built.pieces, *built.touches)  # computed once, kept on the workers for the stages
        built = dataclasses.replace(built, pieces=list(kept[:n]), touches=list(kept[n:]))
        bounds, pieces = split_dataset(built, config)
        pieces = list(dask.persist(*pieces))
        stage(f"examples and split ({built.partitions} partitions)", start)

        start = time.perf_counter()
        matrix = training_matrix(built, pieces, config, keep_negatives=args.keep_negatives)
        windows = matrix.rows["window"].value_counts().to_dict()
        stage(f"matrix ({len(matrix.rows):,} rows {windows}, {matrix.X.nbytes / 1024**3:.2f} GiB)", start)

        import lightgbm as lgb

        start = time.perf_counter()
        train = (matrix.rows["window"] == "train").to_numpy()
        cal = (matrix.rows["window"] == "calibration").to_numpy()
        y = matrix.rows["label"].to_numpy()
        w = matrix.rows["weight"].to_numpy()
        params = {**lightgbm_params(config, matrix.spec), "verbosity": -1}
        booster = lgb.train(
            params,
            lgb.Dataset(matrix.X[train], y[train], weight=w[train]),
            num_boost_round=config.num_boost_round,
            valid_sets=[lgb.Dataset(matrix.X[cal], y[cal], weight=w[cal])],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        test = (matrix.rows["window"] == "test").to_numpy()
        from sklearn.metrics import roc_auc_score

        auc = roc_auc_score(y[test], booster.predict(matrix.X[test]), sample_weight=w[test])
        stage(f"fit (LightGBM, {booster.best_iteration} rounds; test ROC AUC {auc:.4f}, each lead weighing one)", start)

        start = time.perf_counter()
        as_of = bounds.end
        summary = score_dataset(
            client,
            work / "big",
            work / "scores",
            champion.model,
            pd.Timestamp(as_of),
            champion.model.default_cutoffs,
            reasons=False,
        )
        stage(f"score ({summary.scored:,} open leads, {summary.partitions} partitions)", start)
    report(args, rows)


def report(args: argparse.Namespace, rows: list[tuple[str, float, str]]) -> None:
    total = sum(seconds for _, seconds, _ in rows)
    print(f"\n| stage ({args.leads:,} leads, engine {args.engine}) | seconds | peak memory |\n|---|---|---|")
    for name, seconds, memory in rows:
        print(f"| {name} | {seconds:.0f} | {memory} |")
    print(f"| total | {total:.0f} | |")


if __name__ == "__main__":
    main()
