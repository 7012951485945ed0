"""Feature benchmark: N demo leads with their touches -> point-in-time features.

Run by hand:  .venv/bin/python benchmarks/featurize.py [--leads 1000000]
Reports generation time, feature seconds, peak memory (ru_maxrss) and touches/second.
Target on a 2-core machine: 1,000,000 leads under 60 s and under 6 GiB.
"""

from __future__ import annotations

import argparse
import resource
import time

from features import build_features, infer_spec
from training.demo_data import generate_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = generate_demo_data(n_leads=args.leads, seed=args.seed)
    t1 = time.perf_counter()
    spec = infer_spec(data.leads, data.touchpoints)
    features = build_features(data.leads, data.touchpoints, data.end, spec)
    t2 = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    n_touch = len(data.touchpoints)
    print(f"leads={len(data.leads):,} touches={n_touch:,} features={features.shape[1]}")
    print(f"demo data: {t1 - t0:.1f} s")
    print(f"features:  {t2 - t1:.1f} s  ({n_touch / (t2 - t1):,.0f} touches/s)")
    print(f"peak memory (whole process, incl. demo data): {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
