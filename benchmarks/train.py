"""Training benchmark: N demo leads -> scoring moments -> features -> LightGBM + baselines -> MLflow registry.

Run by hand:  .venv/bin/python benchmarks/train.py [--leads 1000000]
Uses a throw-away LEADSCORE home (SQLite MLflow) in a temporary directory.
Target on a 2-core machine: 1,000,000 leads in under 5 minutes (training, not data generation).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from training.demo_data import write_demo_data
from training.pipeline import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        write_demo_data(home / "data", n_leads=args.leads, seed=args.seed)
        t1 = time.perf_counter()
        phases: list[tuple[str, float]] = []

        def progress(message: str) -> None:
            phases.append((message, time.perf_counter()))
            print(f"  [{time.perf_counter() - t1:6.1f} s] {message}", flush=True)

        result = train(
            TrainConfig(
                data=home / "data",
                tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                artifact_location=(home / "mlartifacts").as_uri(),
                cache_dir=home / "cache",
                promote=True,
            ),
            progress=progress,
        )
        t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"leads={args.leads:,} demo data {t1 - t0:.1f} s; training (load -> registered) {t2 - t1:.1f} s")
    m = result.metrics
    print(
        f"peak memory {peak:.2f} GiB; test_roc_auc {m['test_roc_auc']:.4f} "
        f"(logreg {m['baseline_logreg_test_roc_auc']:.4f}, rules {m['baseline_rules_test_roc_auc']:.4f})"
    )


if __name__ == "__main__":
    main()
