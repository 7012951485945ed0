"""The production backends for real: keys, thresholds and MLflow's tracking store on a PostgreSQL server.

A throw-away PostgreSQL cluster is started in a temporary directory (`make test` installs the server
package when it is missing); concurrent approvals race on it for real.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from models.registry import configure_tracking
from serving.errors import Conflict
from serving.store import KeyStore, Principal, make_engine
from serving.thresholds import Grades, ThresholdStore
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
    key, info = keys.create("marketing", "pg-marketing")
    assert keys.authenticate(key) == Principal(info.key_id, "pg-marketing", "marketing")
    marketing, sales = Principal(1, "m", "marketing"), Principal(2, "s", "sales")
    made = store.propose(marketing, "leadscore", "1", 0.2, Grades(0.5, 0.3, 0.1), "on postgres")
    assert store.decide(made.id, sales, True, "ok").status == "active"
    assert store.active().id == made.id  # type: ignore[union-attr]


@pytest.mark.parametrize("same_proposal", [True, False])
def test_racing_approvals_on_postgres_leave_exactly_one_active(postgres_url: str, same_proposal: bool) -> None:
    store = ThresholdStore(make_engine(postgres_url))
    marketing = Principal(1, "m", "marketing")
    proposals = [
        store.propose(marketing, "leadscore", "1", 0.1 + i / 100, Grades(0.5, 0.3, 0.05), "race") for i in range(6)
    ]
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def approve(i: int) -> None:
        target = proposals[0] if same_proposal else proposals[i]
        barrier.wait()
        try:
            store.decide(target.id, Principal(100 + i, f"sales-{i}", "sales"), True, "race")
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.status for p in store.history()].count("active") == 1
    if same_proposal:
        assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
    else:  # each approval either activated its proposal (superseding the previous) or lost the race cleanly
        assert outcomes.count("won") >= 1
        mine = {p.id for p in proposals}
        activated = [p for p in store.history() if p.activated_at is not None and p.id in mine]
        assert len(activated) == outcomes.count("won")


def test_mlflow_tracking_and_registry_on_postgres(postgres_url: str, demo_dir: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, demo_dir, promote=True)
    config.tracking_uri = postgres_url
    result = train(config)
    configure_tracking(postgres_url)
    champion = MlflowClient().get_model_version_by_alias("leadscore", "champion")
    assert str(champion.version) == result.model_version
    assert MlflowClient().get_run(result.run_id).data.metrics["test_roc_auc"] == pytest.approx(
        result.metrics["test_roc_auc"]
    )
