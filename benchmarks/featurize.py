"""Feature benchmark: N demo leads with their touches -> point-in-time features.

Run by hand:  .venv/bin/python benchmarks/featurize.py [--leads 1000000] [--csv DIR]
Reports generation time, feature seconds, peak memory (ru_maxrss) and touches/second.
Target on a 2-core machine: 1,000,000 leads under 60 s and under 6 GiB.

With ``--csv DIR`` the demo data is written there as CSV once (reused when present) and read back through
the data contract (``load_crm_data``: format detection, validation, one reading per time column) before the
features are built: the loading time real exports pay. Target: within 10% of the loader before issue 13
(run the same command with ``PYTHONPATH`` set to a checkout of that commit to compare).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from features import build_features, infer_spec
from training.data import load_crm_data
from training.demo_data import generate_demo_data, write_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--csv", type=Path, default=None, help="read the data from CSV files in this directory")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.csv is not None:
        if not (args.csv / "leads.csv").exists():
            write_demo_data(args.csv, n_leads=args.leads, seed=args.seed, fmt="csv")
        t0 = time.perf_counter()
        loaded = load_crm_data(args.csv, data_end="2100-01-01")
        print(f"load from CSV (read + validate): {time.perf_counter() - t0:.1f} s")
        leads, touches, end = loaded.leads, loaded.touchpoints, loaded.end_time
    else:
        demo = generate_demo_data(n_leads=args.leads, seed=args.seed)
        leads, touches, end = demo.leads, demo.touchpoints, demo.end
    t1 = time.perf_counter()
    assert touches is not None
    spec = infer_spec(leads, touches)
    features = build_features(leads, touches, end, spec)
    t2 = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    n_touch = len(touches)
    print(f"leads={len(leads):,} touches={n_touch:,} features={features.shape[1]}")
    print(f"demo data or load: {t1 - t0:.1f} s")
    print(f"features:  {t2 - t1:.1f} s  ({n_touch / (t2 - t1):,.0f} touches/s)")
    print(f"peak memory (whole process, incl. demo data): {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
