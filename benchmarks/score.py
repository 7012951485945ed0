"""Batch scoring benchmark: memory of `leadscore score` against the memory of the data itself.

Run by hand:  .venv/bin/python benchmarks/score.py [--leads 1000000] [--reasons]
Builds a throw-away home (20,000-lead champion) and N demo leads, then in one process: loads the data
(peak memory = "the data itself"), scores every open lead in chunks to Parquet, and reports seconds and
the peak memory over the data's.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BIN = Path(sys.executable).parent


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--reasons", action="store_true", help="Also compute fit, engagement and reasons.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {"LEADSCORE_HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin"}
        subprocess.run(
            [BIN / "leadscore", "demo-data", "--out", f"{tmp}/small", "--leads", "20000"],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [BIN / "leadscore", "train", "--data", f"{tmp}/small", "--promote"],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [BIN / "leadscore", "demo-data", "--out", f"{tmp}/big", "--leads", str(args.leads)],
            env=env,
            check=True,
            capture_output=True,
        )

        import os

        os.environ.update(env)
        from leadscore.settings import get_settings
        from models.registry import configure_tracking, load_champion
        from training.data import load_crm_data
        from training.score import open_leads, score_chunks, write_scores

        base = peak_gib()
        t0 = time.perf_counter()
        data = load_crm_data(f"{tmp}/big")
        data_peak = peak_gib()
        t1 = time.perf_counter()
        settings = get_settings()
        configure_tracking(settings.resolved_tracking_uri)
        loaded = load_champion(settings.model_name, settings.model_alias, settings.model_cache_dir)
        as_of = pd.Timestamp("2026-05-01", tz="UTC")
        leads, _closed, _not_created = open_leads(data, as_of)
        chunks = score_chunks(
            loaded.model, leads, data.touchpoints, as_of, loaded.model.default_cutoffs, reasons=args.reasons
        )
        rows, qualified = write_scores(chunks, Path(tmp) / "scores.parquet")
        t2 = time.perf_counter()
        total_peak = peak_gib()
    print(f"leads={args.leads:,} scored={rows:,} qualified={qualified:,} reasons={args.reasons}")
    print(f"load+validate {t1 - t0:.1f} s, scoring {t2 - t1:.1f} s ({rows / (t2 - t1):,.0f} leads/s)")
    print(
        f"peak memory: interpreter {base:.2f} GiB, after loading the data {data_peak:.2f} GiB, "
        f"whole run {total_peak:.2f} GiB (x{(total_peak - base) / max(data_peak - base, 1e-9):.2f} of the data's)"
    )


if __name__ == "__main__":
    main()
