"""Scale benchmark of the Dask engine: time per stage and peak memory per process.

Run by hand:  .venv/bin/python benchmarks/scale.py --leads 1000000 [--engine dask|local] [--scheduler tcp://...]
              [--data DIR]  (reuse demo data written by an earlier run: the same data for both engines)
              [--max-train-examples N] [--max-window-examples N] [--no-tune]  (as `leadscore train`)

Stages (each timed; the peak resident memory of this process and of every Dask worker is read after each):
  demo-data   N demo leads written as folders of Parquet parts by the workers (engine dask) or one process
  train       `leadscore train --promote`: examples, purged split, features, fit (with the candidate search,
              calibration, baselines), MLflow run and registration; with --engine dask the sub-stages are
              timed from its progress lines, and the test ROC AUC (over all scoring moments, each once) is printed
  score       every open lead as of the end of the data scored by the model just registered, written as
              Parquet parts (dask) or one file (local)

With --engine local the stages are the `leadscore` commands in a subprocess (peak memory of that process).
"""

from __future__ import annotations

import argparse
import os
import re
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
    parser.add_argument("--data", type=Path, default=None, help="Demo data already written (skips demo-data).")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to write (default: a tmp dir).")
    parser.add_argument("--max-train-examples", type=int, default=1_000_000, help="As `train --max-train-examples`.")
    parser.add_argument("--max-window-examples", type=int, default=1_000_000, help="As `train --max-window-examples`.")
    parser.add_argument("--no-tune", action="store_true", help="One LightGBM candidate (as `train --no-tune`).")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-scale-"))
    home = work / f"home-{args.engine}"
    env = {**os.environ, "LEADSCORE_HOME": str(home), "LEADSCORE_LOG_LEVEL": "warning", "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(LEADSCORE_HOME=str(home))
    data = args.data or work / "big"
    print(f"work dir {work}; data {data}", flush=True)
    rows: list[tuple[str, float, str]] = []

    if args.engine == "local":
        commands = [
            ("train", ["train", "--data", str(data), "--promote", *(["--no-tune"] if args.no_tune else [])]),
            ("score", ["score", "--data", str(data), "--out", str(work / "scores.parquet"), "--no-reasons"]),
        ]
        if args.data is None:
            commands.insert(0, ("demo-data", ["demo-data", "--out", str(data), "--leads", str(args.leads)]))
        for name, command in commands:
            start = time.perf_counter()
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%M", BIN / "leadscore", *command], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            peak = int(proc.stderr.strip().splitlines()[-1]) / 1024**2
            found = re.search(r"roc_auc \(all moments\)\s*[│|]\s*([0-9.]+)", proc.stdout)
            label = f"{name} (test ROC AUC {found.group(1)})" if found else name
            rows.append((label, time.perf_counter() - start, f"process {peak:.2f} GiB"))
            print(f"{label}: {rows[-1][1]:.0f} s, {rows[-1][2]}", flush=True)
        report(args, rows)
        return

    import pandas as pd

    from leadscore.settings import get_settings
    from models.registry import configure_tracking, load_champion
    from training.dask_engine import dask_client, score_dataset, write_demo_data_dask
    from training.dask_training import train_on_dask
    from training.pipeline import TrainConfig

    settings = get_settings()
    settings.ensure_home()
    with dask_client(args.scheduler, say=print) as client:

        def stage(name: str, started: float) -> None:
            peaks = worker_peaks(client)
            where = f"this process {own_peak_gib():.2f} GiB; workers " + ", ".join(f"{p:.2f}" for p in peaks) + " GiB"
            rows.append((name, time.perf_counter() - started, where))
            print(f"{name}: {rows[-1][1]:.0f} s; peak {where}", flush=True)

        if args.data is None:
            start = time.perf_counter()
            counts = write_demo_data_dask(client, data, args.leads)
            stage(f"demo-data ({counts['leads']:,} leads, {counts['touchpoints']:,} touches)", start)

        config = TrainConfig(
            data=data,
            promote=True,
            experiment=settings.experiment,
            model_name=settings.model_name,
            seed=settings.seed,
            tracking_uri=settings.resolved_tracking_uri,
            registry_uri=settings.resolved_registry_uri,
            artifact_location=settings.artifact_location,
            cache_dir=settings.model_cache_dir,
            tune=not args.no_tune,
        )
        start = last = time.perf_counter()
        steps: list[tuple[str, float]] = []

        def progress(message: str) -> None:
            nonlocal last
            now = time.perf_counter()
            if steps:
                steps[-1] = (steps[-1][0], now - last)
            steps.append((message, 0.0))
            last = now
            print(f"  {now - start:7.1f} s  {message}", flush=True)

        result = train_on_dask(
            client,
            config,
            progress,
            max_train_examples=args.max_train_examples,
            max_window_examples=args.max_window_examples,
        )
        steps[-1] = (steps[-1][0], time.perf_counter() - last)
        engine = result.model.meta["engine"]
        stage(
            f"train (test ROC AUC {result.metrics['test_roc_auc']:.4f}; {engine['partitions']} partitions, "
            f"train negatives kept {engine['keep_negatives']:.3f})",
            start,
        )
        for message, seconds in steps:
            print(f"    {seconds:7.1f} s  {message}")

        start = time.perf_counter()
        configure_tracking(settings.resolved_tracking_uri)
        champion = load_champion(settings.model_name, settings.model_alias, settings.model_cache_dir)
        summary = score_dataset(
            client,
            data,
            work / "scores",
            champion.model,
            pd.Timestamp(result.model.meta["windows"]["data_end"]),
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
