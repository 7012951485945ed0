"""Soak test: minutes of mixed load on loopback against `leadscore serve --workers 2`, a champion promoted mid-run.

Run by hand (not part of pytest; stdlib, httpx, and the project's models.registry to move the alias):
    .venv/bin/python benchmarks/soak.py [--duration 300] [--warmup 30] [--workers 2] [--clients 8]
        [--home DIR] [--json PATH] [--keep]

Without --home it builds a throw-away home (a few minutes on 2 cores): 20,000 demo leads, a trained champion
and a second version of the model, trained on the same data with another seed and registered without being
promoted. With --home it reuses a home that holds a champion and either a later version or its demo data
(home/demo-data, as `leadscore demo` leaves it; a second version is then trained); the champion alias is moved
back and the soak's keys revoked at the end. Either way it creates one key per role (with --owner when
`leadscore keys create` has it).

It starts `leadscore serve --workers N` (the model alias polled every --reload-interval seconds) and runs
--clients threads, each with its own keep-alive connection, sending requests as fast as they are answered
(or at --rate requests/s in all) in a fixed mix: single scoring with and without reasons, batches, threshold
reads (policy, analysis at a cut-off, curve, history), proposals by marketing or sales and decisions by the
other side (--governance-rate of them per second in all; a decision is drawn from the pending proposals, so
two clients sometimes decide the same one: 409 is a legitimate answer), model info, /readyz, /metrics, and
bad requests that must be answered 401, 403 or 422.
Every request has a timeout and is recorded: kind, status, latency, or the exception of a failed one.
At --promote-at of the run the second version becomes the champion (the registry alias is moved, as
`leadscore train --promote` does), /v1/admin/reload is called on fresh connections and the poll is left to
catch the other worker; the promoter then approves, as marketing and as sales, the proposal the server opens
to map the policy in force onto the new model. The resident memory of the server (the VmRSS of the uvicorn
parent and all its descendants) is sampled every --sample-every seconds.

The run is bounded: it stops after --duration seconds or --max-requests requests, whichever comes first, and
the whole script is stopped by an alarm after --run-timeout seconds. The server is stopped with SIGTERM,
then SIGKILL after 20 s; a throw-away home is removed unless --keep.

It reports a table per request kind (count, 2xx/4xx/5xx, transport errors, p50/p99/max ms, req/s), the
memory samples, the model versions answered before and after the promotion, then checks the reliability
issue's targets, each PASS or FAIL (exit status 1 on any FAIL):
  * zero 5xx answers;
  * zero failed or reset requests (refused, reset or closed connections, protocol errors, timeouts);
  * resident memory growth under 10% after warm-up: the median of the last window against the median of the
    window just after warm-up (each window min(60 s, a third of the time after warm-up));
  * the new champion is served: every scoring answer to a request sent later than the reload interval plus
    5 s after the promotion carries the new version, and there is at least one.
On FAIL it prints the server log's error lines. --json PATH writes every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from training.demo_data import COUNTRIES, INDUSTRIES, LEVELS, MKT_CHANNEL, SIZES, SOURCES

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
ROLES = ("crm", "marketing", "sales", "admin")
SIDES = ("marketing", "sales")
GRACE_SECONDS = 5.0  # after the reload interval, for the last worker to swap models

# The mix: kind -> weight (share of requests). Proposals and decisions are also paced (GOVERNANCE), so that the
# history they grow (GET /v1/threshold/history returns all of it) does not depend on the throughput: about 300
# policies in 5 minutes at the default --governance-rate.
MIX: dict[str, int] = {
    "score": 40,  # POST /v1/score, one lead, with reasons
    "score_bare": 14,  # POST /v1/score?explain=false
    "batch": 3,  # POST /v1/score/batch, --batch-size leads, no reasons
    "batch_explain": 2,  # POST /v1/score/batch, a fifth of --batch-size leads, with reasons
    "threshold": 10,  # GET /v1/threshold (any role)
    "analysis": 8,  # GET /v1/threshold/analysis?cutoff= (or leads_per_week, min_precision, min_recall)
    "curve": 2,  # GET /v1/threshold/curve
    "history": 1,  # GET /v1/threshold/history
    "propose": 2,  # POST /v1/threshold/proposals (marketing or sales)
    "decide": 2,  # POST /v1/threshold/proposals/{id}/approve or /reject (the other side)
    "model": 3,  # GET /v1/model
    "ready": 2,  # GET /readyz (no key)
    "metrics": 1,  # GET /metrics
    "invalid": 4,  # a bad lead (422), an unknown key (401), a marketing key scoring (403)
}
GOVERNANCE = ("propose", "decide")  # also paced: --governance-rate in all, so the history grows at a known rate
# Statuses a kind may answer; anything else is counted as unexpected (reported, not a target unless 5xx).
EXPECTED: dict[str, set[int]] = {
    "score": {200},
    "score_bare": {200},
    "batch": {200},
    "batch_explain": {200},
    "threshold": {200},
    "analysis": {200, 422},  # 422: a precision or recall no cut-off reaches
    "curve": {200},
    "history": {200},
    "propose": {201},
    "decide": {200, 409},  # 409: decided by another client first, or a racing activation
    "model": {200},
    "ready": {200},
    "metrics": {200},
    "invalid": {401, 403, 422},
    "reload": {200},
    "approve_mapped": {200, 409},
}

# The demo CRM's own vocabularies, so the soak's leads look like the ones the model was trained on.
TOUCHES = MKT_CHANNEL
VERSION = re.compile(rb'"model_version":"([^"]*)"')


class RunTimeout(Exception):
    """The whole run took longer than --run-timeout."""


# ---------------------------------------------------------------------------------------------
# Setup: home, registry, keys, server
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a leadscore command; on failure show its output and stop."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def registry(set_champion: str | None = None) -> dict[str, Any]:
    """The champion and every registered version of the home in LEADSCORE_HOME; with ``set_champion``, move the
    alias there first, through models.registry.set_alias as ``leadscore train --promote`` does. In this process:
    the promotion must take effect at a known moment, not after a new interpreter has imported MLflow."""
    from mlflow import MlflowClient

    from leadscore.settings import get_settings
    from models.registry import champion_version, configure_tracking, set_alias

    settings = get_settings()
    configure_tracking(settings.resolved_tracking_uri, settings.resolved_registry_uri)
    if set_champion is not None:
        set_alias(settings.model_name, settings.model_alias, set_champion)
    mv = champion_version(settings.model_name, settings.model_alias)
    found = MlflowClient().search_model_versions(f"name='{settings.model_name}'")
    return {
        "champion": None if mv is None else str(mv.version),
        "versions": [str(v) for v in sorted(int(v.version) for v in found)],
    }


def prepare_home(home: Path, built: bool, env: dict[str, str], seed: int) -> tuple[str, str]:
    """Build (or check) the home; return (the champion's version, the version to promote mid-run)."""
    data = home / "demo-data"
    if built:
        print("building a home: 20,000 demo leads, a trained champion, a second version ...", flush=True)
        t = time.monotonic()
        run([str(BIN / "leadscore"), "demo-data", "--out", str(data)], env, 900)
        run([str(BIN / "leadscore"), "train", "--data", str(data), "--promote"], env, 1800)
        print(f"  champion trained ({time.monotonic() - t:.0f} s)", flush=True)
    found = registry()
    champion = found["champion"]
    if champion is None:
        sys.exit(f"no champion in {home}: train one with `leadscore train --data ... --promote`")
    later = [v for v in found["versions"] if int(v) > int(champion)]
    if not later:
        if not (data / "leads.parquet").exists() and not any(data.glob("leads.*")):
            sys.exit(f"{home} has no version after the champion ({champion}) and no demo-data to train one")
        t = time.monotonic()
        run(
            [str(BIN / "leadscore"), "train", "--data", str(data), "--no-promote", "--seed", str(seed)],
            env,
            1800,
        )
        print(f"  second version trained, not promoted ({time.monotonic() - t:.0f} s)", flush=True)
        found = registry()
        later = [v for v in found["versions"] if int(v) > int(champion)]
        if not later:
            sys.exit("training the second version registered nothing")
    return str(champion), later[-1]


def create_keys(env: dict[str, str], tag: str) -> dict[str, str]:
    """One key per role; --owner is passed when this version of the CLI has it."""
    helptext = run([str(BIN / "leadscore"), "keys", "create", "--help"], env, 120)
    owner = "--owner" in helptext
    keys = {}
    for role in ROLES:
        command = [str(BIN / "leadscore"), "keys", "create", "--role", role, "--name", f"{tag}-{role}"]
        if owner:
            command += ["--owner", f"{tag}-{role}@example.com"]
        keys[role] = run(command, env, 120).strip().splitlines()[-1].strip()
    return keys


def descendants(root: int) -> list[int]:
    """The process and all its descendants, from /proc/*/stat (ppid is the 2nd field after the name)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children[ppid].append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0  # a zombie has no VmRSS line


def start_server(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "leadscore"), "serve", "--port", str(port), "--workers", str(workers)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # Ctrl-C reaches only this script, which stops the server itself
        )


def wait_ready(base: str, server: subprocess.Popen[bytes], log: Path, workers: int, seconds: float) -> None:
    """/readyz answers 200, and the log shows every worker's start-up complete."""
    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not come up in {seconds:.0f} s:\n{log.read_text()[-3000:]}")
        started = log.read_text(errors="replace").count("Application startup complete")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200 and started >= workers:
                return
        time.sleep(0.5)


def stop_server(server: subprocess.Popen[bytes]) -> str:
    """SIGTERM to the uvicorn parent (it stops its workers); SIGKILL to what is left after 20 s."""
    if server.poll() is not None:
        return f"had exited ({server.returncode})"
    tree = descendants(server.pid)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(20)
        how = "stopped by SIGTERM"
    except subprocess.TimeoutExpired:
        how = "did not stop in 20 s after SIGTERM: killed"
    for pid in tree:  # only the processes of this server, each by its id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(5)
    return how


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------
def make_lead(rng: random.Random, i: int, now: datetime) -> dict[str, Any]:
    created = now - timedelta(days=rng.uniform(0.2, 170), seconds=rng.randint(0, 86_400))
    age = (now - created).total_seconds()
    touches = []
    for _ in range(rng.choice((0, 1, 3, 8, 15, 30, 60))):
        kind = rng.choice(list(TOUCHES))
        touch: dict[str, Any] = {
            "occurred_at": (created + timedelta(seconds=rng.uniform(0, age))).isoformat(),
            "touch_type": kind,
            "channel": rng.choice(TOUCHES[kind]),
        }
        if kind == "web_visit":
            touch["value"] = round(rng.expovariate(0.4), 1)
        touches.append(touch)
    attributes: dict[str, Any] = {
        "lead_source": rng.choice(SOURCES),
        "industry": rng.choice((*INDUSTRIES, None)),
        "company_size": rng.choice(SIZES),
        "country": rng.choice(COUNTRIES),
        "job_level": rng.choice((*LEVELS, None)),
        "annual_revenue_musd": round(rng.lognormvariate(2.5, 1.2), 2),
    }
    body: dict[str, Any] = {
        "lead_id": f"soak-{i}",
        "created_at": created.isoformat(),
        "attributes": attributes,
        "touchpoints": touches,
    }
    if i % 3 == 0:
        body["as_of"] = (now - timedelta(hours=1)).isoformat()
    return body


@dataclass
class Bodies:
    single: list[bytes]
    batches: list[bytes]
    batches_explain: list[bytes]
    invalid_lead: bytes

    @classmethod
    def build(cls, seed: int, batch_size: int) -> Bodies:
        rng = random.Random(seed)
        now = datetime.now(UTC)
        leads = [make_lead(rng, i, now) for i in range(max(400, batch_size))]
        small = max(1, batch_size // 5)

        def batch(size: int, explain: bool) -> bytes:
            return json.dumps({"leads": rng.sample(leads, size), "explain": explain}).encode()

        bad = dict(leads[0], created_at="yesterday-ish")
        return cls(
            single=[json.dumps(x).encode() for x in leads[:400]],
            batches=[batch(batch_size, False) for _ in range(4)],
            batches_explain=[batch(small, True) for _ in range(4)],
            invalid_lead=json.dumps(bad).encode(),
        )


# ---------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    start: float  # seconds since the load started
    kind: str
    status: int  # 0: no answer (see error)
    latency: float  # seconds
    error: str | None = None
    version: str | None = None  # model_version of a scoring answer


@dataclass
class Shared:
    """What the clients share: the pending proposals (id -> proposing role) and the stop signal."""

    pending: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: Iterator[int] = field(default_factory=itertools.count)
    stopped_by: str = ""
    governance_next: float = 0.0  # monotonic time before which no proposal or decision is sent

    def governance_turn(self, interval: float) -> bool:
        """True at most once per ``interval`` seconds across all clients (proposals and decisions are paced)."""
        now = time.monotonic()
        with self.lock:
            if now < self.governance_next:
                return False
            self.governance_next = max(self.governance_next + interval, now - interval)
            return True


# A request: method, path, key role (None: no key; "bogus": an unknown key), JSON body, and what to do with
# the answer.
Request = tuple[str, str, str | None, bytes | None, Callable[[httpx.Response], None] | None]


class Load:
    def __init__(self, base: str, keys: dict[str, str], bodies: Bodies, args: argparse.Namespace) -> None:
        self.base = base
        self.keys = keys
        self.bodies = bodies
        self.args = args
        self.shared = Shared()
        self.records: list[list[Record]] = []
        self.t0 = 0.0
        self.kinds = list(MIX)
        self.weights = [MIX[k] for k in self.kinds]

    def headers(self, role: str | None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if role == "bogus":
            h["Authorization"] = "Bearer not-a-key-" + "x" * 20
        elif role is not None:
            h["Authorization"] = f"Bearer {self.keys[role]}"
        return h

    def send(self, client: httpx.Client, kind: str, req: Request, out: list[Record]) -> httpx.Response | None:
        method, path, role, body, after = req
        start = time.monotonic()
        try:
            r = client.request(method, path, content=body, headers=self.headers(role))
            content = r.content
        except httpx.HTTPError as err:
            out.append(Record(start - self.t0, kind, 0, time.monotonic() - start, f"{type(err).__name__}: {err}"))
            return None
        latency = time.monotonic() - start
        version = None
        if kind in ("score", "score_bare", "batch", "batch_explain") and r.status_code == 200:
            m = VERSION.search(content)
            version = m[1].decode() if m else "?"
        out.append(Record(start - self.t0, kind, r.status_code, latency, None, version))
        if after is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                after(r)
        return r

    def request(self, kind: str, rng: random.Random) -> Request:
        b = self.bodies
        if kind == "score":
            return "POST", "/v1/score", "crm", rng.choice(b.single), None
        if kind == "score_bare":
            return "POST", "/v1/score?explain=false", rng.choice(("crm", "admin")), rng.choice(b.single), None
        if kind == "batch":
            return "POST", "/v1/score/batch", "crm", rng.choice(b.batches), None
        if kind == "batch_explain":
            return "POST", "/v1/score/batch", "crm", rng.choice(b.batches_explain), None
        if kind == "threshold":
            return "GET", "/v1/threshold", rng.choice(ROLES), None, None
        if kind == "analysis":
            ask = rng.random()
            if ask < 0.7:
                query = f"cutoff={rng.uniform(0.02, 0.8):.3f}"
            elif ask < 0.8:
                query = f"leads_per_week={rng.uniform(5, 400):.1f}"
            elif ask < 0.9:
                query = f"min_precision={rng.uniform(0.1, 0.95):.2f}"
            else:
                query = f"min_recall={rng.uniform(0.1, 0.99):.2f}"
            return "GET", f"/v1/threshold/analysis?{query}", rng.choice(SIDES), None, None
        if kind == "curve":
            return "GET", "/v1/threshold/curve", rng.choice(SIDES), None, None
        if kind == "history":
            return "GET", "/v1/threshold/history", rng.choice(ROLES), None, None
        if kind == "propose":
            return self.propose(rng)
        if kind == "decide":
            return self.decide(rng)
        if kind == "model":
            return "GET", "/v1/model", rng.choice(ROLES), None, None
        if kind == "ready":
            return "GET", "/readyz", None, None, None
        if kind == "metrics":
            return "GET", "/metrics", "admin", None, None
        if kind == "invalid":
            which = rng.randrange(3)
            if which == 0:
                return "POST", "/v1/score", "crm", b.invalid_lead, None  # 422
            if which == 1:
                return "POST", "/v1/score", "bogus", rng.choice(b.single), None  # 401
            return "POST", "/v1/score", "marketing", rng.choice(b.single), None  # 403
        raise ValueError(kind)

    def propose(self, rng: random.Random) -> Request:
        role = rng.choice(SIDES)
        proposal: dict[str, Any] = {"cutoff": round(rng.uniform(0.05, 0.6), 3), "reason": f"soak: {role} proposes"}
        if rng.random() < 0.3:
            c = round(rng.uniform(0.02, 0.1), 3)
            proposal["grades"] = {"a": round(c + rng.uniform(0.3, 0.6), 3), "b": round(c + 0.15, 3), "c": c}

        def after(r: httpx.Response) -> None:
            if r.status_code == 201:
                with self.shared.lock:
                    self.shared.pending[int(r.json()["version"])] = role

        return "POST", "/v1/threshold/proposals", role, json.dumps(proposal).encode(), after

    def decide(self, rng: random.Random) -> Request:
        with self.shared.lock:
            pending = list(self.shared.pending.items())
        if not pending:
            return self.propose(rng)
        policy_id, proposer = rng.choice(pending)  # not removed yet: two clients may decide the same one
        decider = "sales" if proposer == "marketing" else "marketing"
        verb = "approve" if rng.random() < 0.75 else "reject"

        def after(r: httpx.Response) -> None:
            if r.status_code in (200, 404, 409):
                with self.shared.lock:
                    self.shared.pending.pop(policy_id, None)

        body = json.dumps({"reason": f"soak: {decider} {verb}s"}).encode()
        return "POST", f"/v1/threshold/proposals/{policy_id}/{verb}", decider, body, after

    def client(self, index: int) -> None:
        rng = random.Random(self.args.seed * 1000 + index)
        out: list[Record] = []
        self.records.append(out)
        interval = self.args.clients / self.args.rate if self.args.rate > 0 else 0.0
        next_at = time.monotonic()
        with httpx.Client(base_url=self.base, timeout=self.args.request_timeout) as client:
            while not self.shared.stop.is_set():
                if next(self.shared.sent) >= self.args.max_requests:
                    self.shared.stopped_by = self.shared.stopped_by or f"--max-requests {self.args.max_requests}"
                    self.shared.stop.set()
                    break
                kind = rng.choices(self.kinds, self.weights)[0]
                while kind in GOVERNANCE and not self.shared.governance_turn(1 / self.args.governance_rate):
                    kind = rng.choices(self.kinds, self.weights)[0]  # not their turn: another kind instead
                req = self.request(kind, rng)
                if kind == "decide" and req[1] == "/v1/threshold/proposals":
                    kind = "propose"  # nothing was pending: decide fell back to a proposal
                self.send(client, kind, req, out)
                if interval:
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self.shared.stop.wait(delay)


class Promoter(threading.Thread):
    """At the promotion time: move the alias, reload on fresh connections, approve the mapped proposal."""

    def __init__(self, load: Load, at: float, new_version: str, interval: float) -> None:
        super().__init__(name="promoter", daemon=True)
        self.load, self.at, self.new_version, self.interval = load, at, new_version, interval
        self.promoted_at: float | None = None
        self.reloads: list[dict[str, Any]] = []
        self.mapped: list[dict[str, Any]] = []
        self.error: str | None = None
        self.out: list[Record] = []

    def run(self) -> None:
        load = self.load
        load.records.append(self.out)
        if load.shared.stop.wait(max(0.0, load.t0 + self.at - time.monotonic())):
            return
        try:
            asked = time.monotonic() - load.t0
            registry(set_champion=self.new_version)
            self.promoted_at = time.monotonic() - load.t0
            print(
                f"  [{self.promoted_at:6.1f} s] version {self.new_version} is the champion now "
                f"(the alias moved in {self.promoted_at - asked:.2f} s)",
                flush=True,
            )
            for _ in range(6):  # a fresh connection each time, to reach both workers (the poll catches a miss)
                with httpx.Client(base_url=load.base, timeout=load.args.request_timeout) as fresh:
                    r = load.send(fresh, "reload", ("POST", "/v1/admin/reload", "admin", b"{}", None), self.out)
                if r is not None and r.status_code == 200:
                    self.reloads.append(r.json())
                time.sleep(0.3)
            # Wait until every worker must have swapped, then approve the proposal mapping the policy in force
            # to the new model (opened by the server when a policy is active), as both sides.
            wait = self.promoted_at + self.interval + GRACE_SECONDS - (time.monotonic() - load.t0)
            if load.shared.stop.wait(max(0.0, wait)):
                return
            with httpx.Client(base_url=load.base, timeout=load.args.request_timeout) as client:
                r = load.send(client, "history", ("GET", "/v1/threshold/history", "sales", None, None), self.out)
                policies = r.json()["policies"] if r is not None and r.status_code == 200 else []
                for p in policies:
                    if p["proposed_role"] == "system" and p["status"] == "proposed":
                        if p["model_version"] != self.new_version:
                            continue
                        answers = []
                        for side in SIDES:
                            body = json.dumps({"reason": f"soak: {side} accepts the mapping"}).encode()
                            path = f"/v1/threshold/proposals/{p['version']}/approve"
                            a = load.send(client, "approve_mapped", ("POST", path, side, body, None), self.out)
                            answers.append(None if a is None else a.status_code)
                        self.mapped.append({"policy": p["version"], "answers": answers})
        except Exception as err:  # reported, and the target on the new champion fails
            self.error = f"{type(err).__name__}: {err}"
            print(f"  promotion failed: {self.error}", flush=True)


class Sampler(threading.Thread):
    """Sums the VmRSS of the server's process tree every few seconds."""

    def __init__(self, root: int, every: float, t0: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root, self.every, self.t0 = root, every, t0
        self.samples: list[tuple[float, int, dict[int, int]]] = []  # (t, total KiB, pid -> KiB)
        self.pids_seen: set[int] = set()
        self.stop = threading.Event()

    def sample(self) -> None:
        per = {pid: kib for pid in descendants(self.root) if (kib := rss_kib(pid)) is not None}
        self.pids_seen.update(per)
        self.samples.append((time.monotonic() - self.t0, sum(per.values()), per))

    def run(self) -> None:
        while True:
            self.sample()
            if self.stop.wait(self.every):
                self.sample()
                return


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def kind_table(records: list[Record], elapsed: float) -> dict[str, dict[str, Any]]:
    by_kind: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_kind[r.kind].append(r)
    table = {}
    for kind in [*MIX, "reload", "approve_mapped"]:
        rs = by_kind.get(kind, [])
        if not rs:
            continue
        answered = [r.latency * 1000 for r in rs if r.status]
        statuses = Counter(r.status for r in rs if r.status)
        table[kind] = {
            "count": len(rs),
            "2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
            "4xx": sum(n for s, n in statuses.items() if 400 <= s < 500),
            "5xx": sum(n for s, n in statuses.items() if s >= 500),
            "errors": sum(1 for r in rs if not r.status),
            "statuses": {str(s): n for s, n in sorted(statuses.items())},
            "unexpected": sum(n for s, n in statuses.items() if s not in EXPECTED[kind]),
            "p50_ms": round(percentile(answered, 0.50), 2),
            "p99_ms": round(percentile(answered, 0.99), 2),
            "max_ms": round(max(answered), 2) if answered else float("nan"),
            "req_per_s": round(len(rs) / elapsed, 2) if elapsed else 0.0,
        }
    return table


def memory_figures(samples: list[tuple[float, int, dict[int, int]]], warmup: float, end: float) -> dict[str, Any]:
    window = min(60.0, (end - warmup) / 3)
    after_warmup = [kib for t, kib, _ in samples if warmup <= t < warmup + window]
    last = [kib for t, kib, _ in samples if end - window <= t]
    totals = [kib for _, kib, _ in samples]
    per_process: dict[str, list[list[float]]] = defaultdict(list)
    for t, _, per in samples:
        for pid, kib in per.items():
            per_process[str(pid)].append([round(t, 1), round(kib / 1024, 1)])
    figures: dict[str, Any] = {
        "samples": len(samples),
        "window_s": round(window, 1),
        "min_mib": round(min(totals) / 1024, 1) if totals else None,
        "max_mib": round(max(totals) / 1024, 1) if totals else None,
        "after_warmup_median_mib": None,
        "last_window_median_mib": None,
        "growth_pct": None,
        "series_mib": [[round(t, 1), round(kib / 1024, 1)] for t, kib, _ in samples],
        "last_per_process_mib": {str(p): round(k / 1024, 1) for p, k in samples[-1][2].items()} if samples else {},
        "per_process_series_mib": per_process,
    }
    if after_warmup and last:
        base, final = statistics.median(after_warmup), statistics.median(last)
        figures.update(
            after_warmup_median_mib=round(base / 1024, 1),
            last_window_median_mib=round(final / 1024, 1),
            growth_pct=round(100 * (final - base) / base, 2),
        )
    return figures


def model_figures(records: list[Record], promoter: Promoter, before: str, after: str) -> dict[str, Any]:
    scored = [r for r in records if r.version is not None]
    at = promoter.promoted_at
    switch_by = None if at is None else at + promoter.interval + GRACE_SECONDS
    old_after = [r for r in scored if switch_by is not None and r.start >= switch_by and r.version != after]
    new_after = [r for r in scored if switch_by is not None and r.start >= switch_by and r.version == after]
    first_new = min((r.start for r in scored if r.version == after), default=None)
    last_old = max((r.start for r in scored if r.version == before), default=None)
    return {
        "before": before,
        "after": after,
        "promoted_at_s": None if at is None else round(at, 1),
        "switch_deadline_s": None if switch_by is None else round(switch_by, 1),
        "before_promotion": dict(Counter(r.version for r in scored if at is None or r.start < at)),
        "after_promotion": dict(Counter(r.version for r in scored if at is not None and r.start >= at)),
        "first_new_answer_s": None if first_new is None else round(first_new, 2),
        "last_old_answer_s": None if last_old is None else round(last_old, 2),
        "old_answers_after_deadline": len(old_after),
        "new_answers_after_deadline": len(new_after),
        "reload_answers": promoter.reloads,
        "mapped_proposals_approved": promoter.mapped,
        "promotion_error": promoter.error,
    }


def print_report(kinds: dict[str, dict[str, Any]], memory: dict[str, Any], models: dict[str, Any]) -> None:
    print("\n| kind | count | 2xx | 4xx | 5xx | errors | p50 ms | p99 ms | max ms | req/s | statuses |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    total = Counter[str]()
    rate = 0.0
    for kind, k in kinds.items():
        statuses = " ".join(f"{s}:{n}" for s, n in k["statuses"].items())
        print(
            f"| {kind} | {k['count']} | {k['2xx']} | {k['4xx']} | {k['5xx']} | {k['errors']} | {k['p50_ms']:.1f} "
            f"| {k['p99_ms']:.1f} | {k['max_ms']:.1f} | {k['req_per_s']:.1f} | {statuses} |"
        )
        for col in ("count", "2xx", "4xx", "5xx", "errors", "unexpected"):
            total[col] += k[col]
        rate += k["req_per_s"]
    print(
        f"| all | {total['count']} | {total['2xx']} | {total['4xx']} | {total['5xx']} | {total['errors']} "
        f"|  |  |  | {rate:.1f} | unexpected for their kind: {total['unexpected']} |"
    )
    print(
        f"\nresident memory (VmRSS of the server's process tree, {memory['samples']} samples): "
        f"min {memory['min_mib']} MiB, max {memory['max_mib']} MiB; median of the {memory['window_s']} s after "
        f"warm-up {memory['after_warmup_median_mib']} MiB, of the last {memory['window_s']} s "
        f"{memory['last_window_median_mib']} MiB: growth {memory['growth_pct']}%"
    )
    series = memory["series_mib"]
    step = max(1, len(series) // 12)
    print("  samples (s: MiB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in series[::step]))
    print(f"  last sample per process (pid: MiB): {memory['last_per_process_mib']}")
    m = models
    mapped = ", ".join(f"{p['policy']}: {p['answers']}" for p in m["mapped_proposals_approved"]) or "none open"
    print(
        f"\nmodel versions: {m['before']} -> {m['after']}, promoted at {m['promoted_at_s']} s "
        f"(every worker due by {m['switch_deadline_s']} s)\n"
        f"  answers before the promotion by version: {m['before_promotion']}\n"
        f"  answers after it by version: {m['after_promotion']}\n"
        f"  first answer from {m['after']} sent at {m['first_new_answer_s']} s; last from {m['before']} sent at "
        f"{m['last_old_answer_s']} s; from another version after the deadline: {m['old_answers_after_deadline']}\n"
        f"  /v1/admin/reload answers (changed, version): "
        f"{[(r['changed'], r['model_version']) for r in m['reload_answers']]}\n"
        f"  mapped proposals for {m['after']} approved by marketing and sales (policy: statuses): "
        f"{mapped}"
    )


def error_lines(log: Path, limit: int = 80) -> list[str]:
    """The server log's lines around errors and tracebacks."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    keep: list[str] = []
    pattern = re.compile(r"ERROR|Traceback|Exception|Error:|exception|Killed|died|Child process", re.I)
    for i, line in enumerate(lines):
        if pattern.search(line):
            keep.extend(lines[i : i + 25] if "Traceback" in line else [line])
    return keep[:limit]


# ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="Seconds of load (default 300).")
    parser.add_argument("--warmup", type=float, default=30, help="Seconds of load before memory is judged.")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2).")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent client threads (default 8).")
    parser.add_argument("--rate", type=float, default=0, help="Requests/s in all (default 0: as fast as answered).")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="Stop after this many requests.")
    parser.add_argument(
        "--governance-rate", type=float, default=2, help="Proposals and decisions per second, in all (default 2)."
    )
    parser.add_argument("--request-timeout", type=float, default=30, help="Seconds per request.")
    parser.add_argument("--run-timeout", type=float, help="Seconds for the whole script (default: generous).")
    parser.add_argument("--batch-size", type=int, default=100, help="Leads per batch without reasons.")
    parser.add_argument("--promote-at", type=float, default=0.5, help="Promotion time, as a share of --duration.")
    parser.add_argument("--reload-interval", type=float, default=5, help="LEADSCORE_RELOAD_INTERVAL_SECONDS.")
    parser.add_argument("--sample-every", type=float, default=2, help="Seconds between memory samples.")
    parser.add_argument("--max-growth", type=float, default=10.0, help="Largest RSS growth that passes, in %%.")
    parser.add_argument("--home", type=Path, help="An existing LEADSCORE_HOME with a champion (else one is built).")
    parser.add_argument("--port", type=int, help="Port (default: a free one).")
    parser.add_argument("--seed", type=int, default=43, help="Seed of the requests and of the second model.")
    parser.add_argument("--json", type=Path, help="Write every figure to this file.")
    parser.add_argument("--server-log", type=Path, help="The server's output (default: in the temporary dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (home, server log).")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.duration:
        parser.error("--warmup must be shorter than --duration")
    if not 0 < args.promote_at < 1 or args.duration * args.promote_at <= args.warmup:
        parser.error("--promote-at must fall after the warm-up, within the run")
    if args.run_timeout is None:
        args.run_timeout = args.duration + (600 if args.home else 3600)

    def alarm(_signum: int, _frame: object) -> None:
        raise RunTimeout(f"the run took longer than --run-timeout {args.run_timeout:.0f} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(args.run_timeout))

    tmp = Path(tempfile.mkdtemp(prefix="leadscore-soak-"))
    home = (args.home or tmp / "home").resolve()
    log = (args.server_log or tmp / "server.log").resolve()
    tag = f"soak-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(
        LEADSCORE_HOME=str(home),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        LEADSCORE_LOG_LEVEL="info",
        LEADSCORE_RELOAD_INTERVAL_SECONDS=str(args.reload_interval),
    )
    os.environ.update(LEADSCORE_HOME=str(home))  # for the registry, read in this process
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    server: subprocess.Popen[bytes] | None = None
    start_version: str | None = None
    failed = True
    try:
        start_version, new_version = prepare_home(home, args.home is None, env, args.seed)
        keys = create_keys(env, tag)
        bodies = Bodies.build(args.seed, args.batch_size)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        print(f"serving version {start_version} with {args.workers} workers on {base}; log {log}", flush=True)
        server = start_server(env, port, args.workers, log)
        wait_ready(base, server, log, args.workers, 300)
        served = httpx.get(f"{base}/v1/model", headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30)
        served.raise_for_status()
        if served.json()["version"] != start_version:
            raise RuntimeError(f"the server serves version {served.json()['version']}, not {start_version}")

        load = Load(base, keys, bodies, args)
        load.t0 = time.monotonic()
        sampler = Sampler(server.pid, args.sample_every, load.t0)
        sampler.start()
        promoter = Promoter(load, args.duration * args.promote_at, new_version, args.reload_interval)
        promoter.start()
        clients = [threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(args.clients)]
        print(
            f"load: {args.clients} clients for {args.duration:.0f} s (warm-up {args.warmup:.0f} s), "
            f"version {new_version} promoted at {args.duration * args.promote_at:.0f} s",
            flush=True,
        )
        for c in clients:
            c.start()
        next_note = 30.0
        while not load.shared.stop.wait(0.5):
            now = time.monotonic() - load.t0
            if now >= args.duration:
                load.shared.stopped_by = f"--duration {args.duration:.0f} s"
                break
            if now >= next_note:
                done = sum(len(rs) for rs in load.records)
                rss = sampler.samples[-1][1] / 1024 if sampler.samples else float("nan")
                print(f"  [{now:6.1f} s] {done} requests, server RSS {rss:.0f} MiB", flush=True)
                next_note += 30
            if server.poll() is not None:
                load.shared.stopped_by = f"the server exited ({server.returncode})"
                break
        load.shared.stop.set()
        elapsed = time.monotonic() - load.t0
        for c in [*clients, promoter]:
            c.join(args.request_timeout + 10)
        sampler.stop.set()
        sampler.join(10)
        stuck = [c.name for c in clients if c.is_alive()]

        records = sorted((r for rs in load.records for r in rs), key=lambda r: r.start)
        kinds = kind_table(records, elapsed)
        memory = memory_figures(sampler.samples, args.warmup, elapsed)
        memory["server_pids_seen"] = sorted(sampler.pids_seen)
        models = model_figures(records, promoter, start_version, new_version)
        print_report(kinds, memory, models)

        fives = sum(k["5xx"] for k in kinds.values())
        errors = Counter(r.error.split(":")[0] for r in records if r.error)
        growth = memory["growth_pct"]
        targets = {
            "zero 5xx": (fives == 0, f"{fives} answers 5xx"),
            "zero failed or reset requests": (
                not errors and not stuck,
                f"{sum(errors.values())} failed {dict(errors)}" + (f", clients stuck: {stuck}" if stuck else ""),
            ),
            f"resident memory growth < {args.max_growth:g}% after warm-up": (
                growth is not None and growth < args.max_growth,
                f"{growth}% ({memory['after_warmup_median_mib']} -> {memory['last_window_median_mib']} MiB)",
            ),
            "the new champion is served": (
                promoter.error is None
                and models["new_answers_after_deadline"] > 0
                and models["old_answers_after_deadline"] == 0,
                f"{models['new_answers_after_deadline']} answers from version {new_version}, "
                f"{models['old_answers_after_deadline']} from another, after {models['switch_deadline_s']} s",
            ),
        }
        first_errors = [f"{r.start:.1f} s {r.kind}: {r.error}" for r in records if r.error][:10]
        print(f"\nstopped by {load.shared.stopped_by or 'the end of the load'} after {elapsed:.1f} s")
        print("targets:")
        for name, (ok, figure) in targets.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {figure}")
        for line in first_errors:
            print(f"    {line}")
        failed = not all(ok for ok, _ in targets.values())
        if failed or any(k["unexpected"] for k in kinds.values()):
            lines = error_lines(log)
            print(f"\nserver log ({log}), lines about errors ({len(lines)}):")
            for line in lines:
                print(f"  {line}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                        "started": datetime.now(UTC).isoformat(),
                        "elapsed_s": round(elapsed, 1),
                        "stopped_by": load.shared.stopped_by,
                        "kinds": kinds,
                        "errors": dict(errors),
                        "first_errors": first_errors,
                        "memory": memory,
                        "models": models,
                        "targets": {name: {"pass": ok, "figure": fig} for name, (ok, fig) in targets.items()},
                        "pass": not failed,
                    },
                    indent=2,
                )
            )
            print(f"figures written to {args.json}")
    except RunTimeout as err:
        print(f"FAIL: {err}", flush=True)
    finally:
        signal.alarm(0)
        if server is not None:
            print(f"server {stop_server(server)}", flush=True)
        if args.home is not None:  # leave a reused home as it was: the champion back, the soak's keys revoked
            with contextlib.suppress(Exception, SystemExit):
                if start_version is not None and registry()["champion"] != start_version:
                    registry(set_champion=start_version)
            for role in ROLES:
                with contextlib.suppress(Exception, SystemExit):
                    subprocess.run(
                        [str(BIN / "leadscore"), "keys", "revoke", f"{tag}-{role}"],
                        env=env,
                        capture_output=True,
                        timeout=120,
                        cwd=REPO,
                    )
        if args.keep:
            print(f"kept {tmp}")
        else:
            if failed and log.is_relative_to(tmp) and log.exists():
                saved = Path(tempfile.gettempdir()) / f"{tag}-server.log"
                shutil.copy(log, saved)
                print(f"server log kept in {saved}")
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
