"""Serving benchmark: our API against `mlflow models serve` of the same model and a constant FastAPI endpoint.

Run by hand (needs `wrk` and `taskset`: `apt-get install wrk util-linux`):
    .venv/bin/python benchmarks/serve.py [--home DIR] [--duration 10] [--pairs 3]

Each server (ours twice: score log on, the default, and off) runs one uvicorn worker pinned to CPU 0; wrk
runs pinned to CPU 1. For each target and concurrency 1 and 8 it reports requests/s and p50/p99 latency
(wrk --latency), after a 2-second warm-up run that is not counted, then checks the issue's targets against
the figures of this same run. Pairs whose ratio is a target (our no-reasons route against the constant
endpoint, and against itself with the score log off) are measured in turns (--pairs, 3 by default) and each
reported by its median run; the last column lists every run. Without --home it builds a
throw-away home: 20,000 demo leads, a trained champion, a crm key.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

BIN = Path(sys.executable).parent
TOUCH_TYPES = [
    "web_visit",
    "email_open",
    "email_click",
    "pricing_page",
    "webinar",
    "content_download",
    "ad_click",
    "call",
    "meeting",
    "demo_request",
]


# The target "one lead, no reasons >= 0.5x the constant endpoint" compares these two. The constant endpoint
# has swung between 4,700 and 6,400 requests/s from run to run on the 2-core machine of the issue, so the
# two are measured in turns (--pairs times) and compared by their median runs. So are the no-reasons route
# with the score log on (the default) and off (LEADSCORE_SCORE_LOG=false): the log must cost under 10%.
PAIRED = ("bare", "floor", "bare_unlogged")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def lead(i: int, as_of: datetime) -> dict:
    start = as_of - timedelta(days=60)
    touches = [
        {
            "occurred_at": (start + timedelta(days=2 * k, hours=i % 7)).isoformat(),
            "touch_type": TOUCH_TYPES[(k + i) % 10],
            "channel": ["web", "email", "paid_search"][k % 3],
        }
        for k in range(30)
    ]
    return {
        "lead_id": f"bench-{i}",
        "created_at": start.isoformat(),
        "as_of": as_of.isoformat(),
        "touchpoints": touches,
        "attributes": {
            "lead_source": "referral",
            "industry": "software",
            "company_size": "51-200",
            "country": "US",
            "job_level": "vp",
            "annual_revenue_musd": 12.0,
        },
    }


def wrk(url: str, body: str, concurrency: int, duration: int, headers: dict[str, str], workdir: Path) -> dict:
    script = workdir / f"post-{abs(hash((url, body))) % 10**8}.lua"
    lua_headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{lua_headers}')
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "errors": int(non2xx[1]) if non2xx else 0}


def print_targets(results: dict[tuple[str, int], dict]) -> None:
    """The issue's targets, checked against the figures of this run (not against remembered anchors)."""
    with_reasons, bare = (results["reasons", 1], results["reasons", 8]), (results["bare", 1], results["bare", 8])
    mlflow, floor = (results["mlflow", 1], results["mlflow", 8]), (results["floor", 1], results["floor", 8])
    batch = results["batch", 1]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    print("\ntargets (this run):")
    for i, c in enumerate((1, 8)):
        ratio = bare[i]["rps"] / floor[i]["rps"]
        print(f"  c={c}: one lead, no reasons >= 0.5x the constant endpoint: {ratio:.2f}x  {verdict(ratio >= 0.5)}")
        ratio = with_reasons[i]["rps"] / mlflow[i]["rps"]
        print(f"  c={c}: one lead, with reasons >= 5x mlflow's one row: {ratio:.1f}x  {verdict(ratio >= 5)}")
    for name, r in (("with reasons", with_reasons[1]), ("no reasons", bare[1])):
        print(f"  c=8: one lead, {name}, p99 < 20 ms: {r['p99']:.2f} ms  {verdict(r['p99'] < 20)}")
    print(f"  c=1: 1,000-lead batch, no reasons, p50 < 60 ms: {batch['p50']:.2f} ms  {verdict(batch['p50'] < 60)}")
    for c in (1, 8):
        ratio = results["bare", c]["rps"] / results["bare_unlogged", c]["rps"]
        print(f"  c={c}: no reasons, score log on >= 0.9x off: {ratio:.2f}x  {verdict(ratio >= 0.9)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="An existing LEADSCORE_HOME with a champion (else one is built).")
    parser.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    parser.add_argument(
        "--pairs", type=int, default=3, help="Turns of our no-reasons route and the constant endpoint (odd)."
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.pairs % 2 == 0:
        parser.error("--pairs must be odd (each row is the median run)")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install wrk util-linux")

    tmp = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    home = args.home or tmp / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(LEADSCORE_HOME=str(home), PATH=f"{BIN}:{env.get('PATH', '')}", LEADSCORE_LOG_LEVEL="warning")
    if args.home is None:
        print("building a home: 20,000 demo leads, trained champion ...", flush=True)
        subprocess.run(
            [BIN / "leadscore", "demo-data", "--out", str(tmp / "data")], env=env, check=True, capture_output=True
        )
        subprocess.run(
            [BIN / "leadscore", "train", "--data", str(tmp / "data"), "--promote"],
            env=env,
            check=True,
            capture_output=True,
        )
    key = (
        subprocess.run(
            [BIN / "leadscore", "keys", "create", "--role", "crm", "--name", "bench", "--owner", "bench@example.com"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    from features import LeadRecord, TouchRecord, build_features_from_records
    from leadscore.settings import get_settings
    from models.registry import configure_tracking, load_champion

    os.environ.update(LEADSCORE_HOME=str(home))
    settings = get_settings()
    configure_tracking(settings.resolved_tracking_uri)
    model = load_champion(settings.model_name, settings.model_alias, settings.model_cache_dir).model
    as_of = datetime(2026, 5, 1, tzinfo=UTC)
    leads = [lead(i, as_of) for i in range(1000)]

    def feature_rows(items: list[dict]) -> list[list[float | None]]:
        records = [
            LeadRecord(
                x["lead_id"],
                datetime.fromisoformat(x["created_at"]),
                x["attributes"],
                [
                    TouchRecord(datetime.fromisoformat(t["occurred_at"]), t["touch_type"], t["channel"])
                    for t in x["touchpoints"]
                ],
            )
            for x in items
        ]
        X = build_features_from_records(records, as_of, model.spec).astype(float)
        return [[None if v != v else float(v) for v in row] for row in X]

    names = model.spec.feature_names
    one_row = json.dumps({"dataframe_split": {"columns": names, "data": feature_rows(leads[:1])}})
    many_rows = json.dumps({"dataframe_split": {"columns": names, "data": feature_rows(leads)}})

    const_app = tmp / "const_app.py"
    const_app.write_text(
        textwrap.dedent("""
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/score")
        async def score() -> dict:
            return {"probability": 0.5}
    """)
    )
    ports = {name: free_port() for name in ("leadscore", "unlogged", "mlflow", "constant")}

    def pinned(command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """A server process on CPU 0 (wrk runs on CPU 1), its output discarded."""
        return subprocess.Popen(
            ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
        )

    procs = {
        "leadscore": pinned(
            [str(BIN / "leadscore"), "serve", "--port", str(ports["leadscore"]), "--workers", "1"], env=env
        ),
        "unlogged": pinned(
            [str(BIN / "leadscore"), "serve", "--port", str(ports["unlogged"]), "--workers", "1"],
            env={**env, "LEADSCORE_SCORE_LOG": "false"},
        ),
        "mlflow": pinned(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{settings.model_name}@{settings.model_alias}",
                "--env-manager",
                "local",
                "-p",
                str(ports["mlflow"]),
                "-w",
                "1",
            ],
            env={**env, "MLFLOW_TRACKING_URI": settings.resolved_tracking_uri},
        ),
        "constant": pinned(
            [
                str(BIN / "uvicorn"),
                "const_app:app",
                "--port",
                str(ports["constant"]),
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=tmp,
            env=env,
        ),
    }
    try:
        wait_http(f"http://127.0.0.1:{ports['leadscore']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['unlogged']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['mlflow']}/ping")
        wait_http(f"http://127.0.0.1:{ports['constant']}/docs")
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        plain = {"Content-Type": "application/json"}
        ours = f"http://127.0.0.1:{ports['leadscore']}"
        mlflow_url = f"http://127.0.0.1:{ports['mlflow']}/invocations"
        one = json.dumps(leads[0])
        cases = {  # key: (label, url, body, headers)
            "reasons": ("leadscore /v1/score, 1 lead x 30 touches, with reasons", f"{ours}/v1/score", one, auth),
            "bare": (
                "leadscore /v1/score, 1 lead x 30 touches, no reasons",
                f"{ours}/v1/score?explain=false",
                one,
                auth,
            ),
            "bare_unlogged": (
                "leadscore /v1/score, 1 lead x 30 touches, no reasons, score log off",
                f"http://127.0.0.1:{ports['unlogged']}/v1/score?explain=false",
                one,
                auth,
            ),
            "batch": (
                "leadscore /v1/score/batch, 1,000 leads, no reasons",
                f"{ours}/v1/score/batch",
                json.dumps({"leads": leads, "explain": False}),
                auth,
            ),
            "mlflow": ("mlflow models serve, 1 feature row", mlflow_url, one_row, plain),
            "mlflow_batch": ("mlflow models serve, 1,000 feature rows", mlflow_url, many_rows, plain),
            "floor": (
                "constant FastAPI endpoint (floor), same 1-lead body",
                f"http://127.0.0.1:{ports['constant']}/score",
                one,
                plain,
            ),
        }
        results: dict[tuple[str, int], dict] = {}
        every_run: dict[tuple[str, int], list[dict]] = {}

        def run(name: str, c: int) -> dict:
            _, url, body, headers = cases[name]
            wrk(url, body, c, 2, headers, tmp)  # warm-up, not counted
            return wrk(url, body, c, args.duration, headers, tmp)

        def row(name: str, c: int) -> None:
            r, each = results[name, c], " / ".join(f"{x['rps']:.0f}" for x in every_run[name, c])
            errors = sum(x["errors"] for x in every_run[name, c])  # of every run, not only the median one
            figures = f"{r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {errors}"
            print(f"| {cases[name][0]} | {c} | {figures} | {each} |", flush=True)

        print(
            "\n| target | c | requests/s | p50 ms | p99 ms | non-2xx | each run, req/s |\n|---|---|---|---|---|---|---|"
        )
        for name in cases:
            for c in (1, 8):
                if name not in PAIRED:
                    results[name, c] = run(name, c)
                    every_run[name, c] = [results[name, c]]
                    row(name, c)
        for c in (1, 8):  # the pair the first target compares, measured in turns; each row is its median run
            for name in PAIRED:
                every_run[name, c] = []
            for _ in range(args.pairs):
                for name in PAIRED:
                    every_run[name, c].append(run(name, c))
            for name in PAIRED:
                results[name, c] = sorted(every_run[name, c], key=lambda r: r["rps"])[args.pairs // 2]
                row(name, c)
        print_targets(results)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
