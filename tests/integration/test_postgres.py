"""The production backends for real: keys, thresholds and MLflow's tracking store on a PostgreSQL server.

A throw-away PostgreSQL cluster is started in a temporary directory (`make test` installs the server
package when it is missing); concurrent approvals race on it for real.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine, func, select

from models.registry import configure_tracking
from serving.errors import Conflict, Forbidden
from serving.results_store import OutcomeRow, ResultsStore, ScoreRecord
from serving.schemas import LeadIn, ScoreOut
from serving.score_log import ScoreLog
from serving.store import KeyStore, Principal, make_engine
from serving.thresholds import SYSTEM_PRINCIPAL, Grades, ThresholdStore, activations, decisions
from tests.conftest import make_config
from training.pipeline import train


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    assert found, f"PostgreSQL's {name} is needed: `make test` installs the postgresql package"
    return found


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    # Not under pytest's private temp root: the server runs as an unprivileged user that must reach it.
    base = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    data = base / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(base, "nobody", "nogroup")
        os.chmod(base, 0o700)
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, cwd=base)  # noqa: E731
    run(pg_bin("initdb"), "-D", str(data), "-U", "leadscore", "--auth=trust", "--no-sync")
    run(
        pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "log"),
        "-o",
        f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+psycopg://leadscore@127.0.0.1:{port}/postgres"
    finally:
        run(pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_keys_and_threshold_history_on_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    keys, store = KeyStore(engine), ThresholdStore(engine)
    key, info = keys.create("marketing", "pg-marketing", owner="pg@test.example")
    assert keys.authenticate(key) == Principal(info.key_id, "pg-marketing", "marketing", "pg@test.example")
    made = store.propose(MARKETING, "leadscore", "history", 0.2, Grades(0.5, 0.3, 0.1), "on postgres")
    assert store.decide(made.id, SALES, True, "ok").status == "active"
    assert store.active().id == made.id  # type: ignore[union-attr]


MARKETING = Principal(1, "m", "marketing", "mia@test.example")
SALES = Principal(2, "s", "sales", "sol@test.example")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: SQLite serialises writers by itself; PostgreSQL only with the proposal's row lock."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return str(request.getfixturevalue("postgres_url"))


def decisions_of(engine: Engine, policy_id: int) -> tuple[list[str], int]:
    """The decisions recorded on one proposal, and how many times it was activated."""
    with engine.connect() as conn:
        made = conn.execute(select(decisions.c.decided_role).where(decisions.c.policy_id == policy_id)).scalars()
        made_roles = sorted(made)
        times = conn.execute(select(func.count()).where(activations.c.policy_id == policy_id)).scalar_one()
    return made_roles, int(times)


def race(*calls: Callable[[], object]) -> list[str]:
    """Run the calls at the same moment; each outcome is 'ok' or the domain error's class name."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
            outcomes.append("ok")
        except (Conflict, Forbidden) as err:
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_both_sides_approving_a_system_proposal_at_once_activate_it_exactly_once(store_url: str) -> None:
    engine = make_engine(store_url)
    store = ThresholdStore(engine)
    for round_ in range(100):
        made = store.propose(
            SYSTEM_PRINCIPAL, "leadscore", f"system-race-{round_}", 0.2, Grades(0.5, 0.3, 0.1), "mapped"
        )
        outcomes = race(
            functools.partial(store.decide, made.id, MARKETING, True, "race"),
            functools.partial(store.decide, made.id, SALES, True, "race"),
        )
        assert outcomes == ["ok", "ok"], f"round {round_}"
        assert decisions_of(engine, made.id) == (["marketing", "sales"], 1), f"round {round_}"
        assert store.get(made.id).status == "active", f"round {round_}: approved by both sides and still pending"


def test_racing_approvals_of_one_proposal_record_one_decision(store_url: str) -> None:
    engine = make_engine(store_url)
    store = ThresholdStore(engine)
    for round_ in range(10):
        made = store.propose(MARKETING, "leadscore", f"one-race-{round_}", 0.2, Grades(0.5, 0.3, 0.05), "race")
        outcomes = race(
            *(
                functools.partial(
                    store.decide, made.id, Principal(100 + i, f"s{i}", "sales", f"s{i}@t.example"), True, ""
                )
                for i in range(4)
            )
        )
        assert outcomes == ["Conflict"] * 3 + ["ok"]
        assert decisions_of(engine, made.id) == (["sales"], 1)
        assert store.active().id == made.id  # type: ignore[union-attr]


def test_racing_approvals_of_different_proposals_all_activate_in_turn(store_url: str) -> None:
    engine = make_engine(store_url)
    store = ThresholdStore(engine)
    made = [
        store.propose(MARKETING, "leadscore", "many-race", 0.1 + i / 100, Grades(0.5, 0.3, 0.05), "race")
        for i in range(6)
    ]
    outcomes = race(
        *(
            functools.partial(store.decide, p.id, Principal(100 + i, f"s{i}", "sales", f"s{i}@t.example"), True, "")
            for i, p in enumerate(made)
        )
    )
    assert outcomes == ["ok"] * 6  # a lost activation number is retried, not refused
    with engine.connect() as conn:
        rows = conn.execute(select(activations).order_by(activations.c.seq)).all()
    mine = [r for r in rows if r.policy_id in {p.id for p in made}]
    assert len(mine) == 6 and [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert store.active().id == mine[-1].policy_id  # type: ignore[union-attr]


def test_workers_racing_on_the_score_log_hand_each_lead_over_once_and_send_it_once(store_url: str) -> None:
    """Two server processes' writers log the same leads at once, then their webhook senders claim at once."""
    stores = [ResultsStore(make_engine(store_url)) for _ in range(2)]
    day = datetime(2026, 1, 5, tzinfo=UTC)
    for round_ in range(20):
        lead = f"race-{round_}"
        records = [ScoreRecord(lead, day, day, day, "1", 0, p, "A", True, "api") for p in (0.6, 0.7)]
        barrier = threading.Barrier(2)
        handed: list[int] = []

        def write(
            store: ResultsStore, record: ScoreRecord, barrier: threading.Barrier = barrier, handed: list[int] = handed
        ) -> None:
            barrier.wait()
            handed.append(store.append_scores([record], notify=True))

        threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, records, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(handed) == [0, 1], f"round {round_}"
    # several rows in one write: the count is of the rows inserted (the driver sums an executemany's rowcount)
    more = [ScoreRecord(f"many-{i}", day, day, day, "1", 0, 0.6, "A", True, "api") for i in range(3)]
    again = ScoreRecord("race-0", day, day, day, "1", 0, 0.9, "A", True, "api")
    assert ResultsStore(make_engine(store_url)).append_scores([*more, again]) == 3
    claims: list[list[str]] = []
    barrier = threading.Barrier(2)

    def claim(store: ResultsStore) -> None:
        barrier.wait()
        claims.append([r["lead_id"] for r in store.claim_due_hand_overs(datetime.now(UTC), timedelta(minutes=5))])

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [lead for batch in claims for lead in batch]
    assert sorted(claimed) == sorted(f"race-{i}" for i in range(20))  # each claimed by exactly one sender
    receipt = stores[0].add_outcomes([OutcomeRow("race-1", "won", day)] * 2, "api:pg")
    again = stores[1].add_outcomes([OutcomeRow("race-1", "won", day)], "api:pg")
    assert (receipt.recorded, receipt.unchanged, again.recorded, again.unchanged) == (1, 1, 0, 1)


def test_a_score_the_database_refuses_is_dropped_and_counted_and_the_log_goes_on(postgres_url: str) -> None:
    """PostgreSQL refuses NUL characters and over-long values; neither may stop the log (it used to retry)."""
    store = ResultsStore(make_engine(postgres_url))
    dropped: list[int] = []
    writer = ScoreLog(store, timedelta(days=1), flush_seconds=3600, on_dropped=dropped.append)
    day = datetime(2026, 1, 5, tzinfo=UTC)
    good = ScoreOut(
        lead_id="pg-ok",
        probability=0.1,
        score=10,
        grade="D",
        qualified=False,
        fit=None,
        engagement=None,
        trend="new",
        reasons=[],
        model_version="1",
        threshold_version=0,
    )
    nul = msgspec.structs.replace(good, lead_id="pg-\x00-nul")
    too_long = msgspec.structs.replace(good, lead_id="pg-long", model_version="v" * 80)
    lead = LeadIn(lead_id="x", created_at=day, attributes={"lead_source": "web\x00site"})
    writer.add([lead, lead, lead], [good, nul, too_long], day, "api")
    assert writer.flush() == 3
    assert dropped == [1]  # the over-long model version; the rest are in
    logged = store.scores()  # the server is the session's: other tests' leads are there too
    assert sorted(i for i in logged["lead_id"] if i.startswith("pg-")) == sorted(["pg-ok", "pg-\ufffd-nul"])
    firsts = store.scored_leads().set_index("lead_id")
    assert firsts.loc["pg-ok", "lead_source"] == "web\ufffdsite"


def test_mlflow_tracking_and_registry_on_postgres(postgres_url: str, demo_dir: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, demo_dir, promote=True, tune=False)
    config.tracking_uri = postgres_url
    result = train(config)
    configure_tracking(postgres_url)
    champion = MlflowClient().get_model_version_by_alias("leadscore", "champion")
    assert str(champion.version) == result.model_version
    assert MlflowClient().get_run(result.run_id).data.metrics["test_roc_auc"] == pytest.approx(
        result.metrics["test_roc_auc"]
    )
