"""A real uvicorn process serving a freshly trained champion, with one key per role."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.store import ROLES, KeyStore, make_engine
from tests.conftest import clean_env, make_config
from training.pipeline import TrainResult, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    home: Path
    keys: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def start_server(home: Path, extra_env: dict[str, str] | None = None, wait_ready: bool = True) -> Server:
    store = KeyStore(make_engine(f"sqlite:///{home / 'leadscore.db'}"))
    keys = {
        role: store.create(role, f"test-{role}-{time.monotonic_ns()}", owner=f"{role}@test.example")[0]
        for role in ROLES
    }
    port = free_port()
    env = clean_env(LEADSCORE_HOME=str(home), LEADSCORE_RELOAD_INTERVAL_SECONDS="3600", **(extra_env or {}))
    log = home / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "leadscore", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200 or (not wait_ready and r.status_code == 503):
                return Server(url, home, keys, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@dataclass
class ServedWorld:
    home: Path
    data_dir: Path
    result: TrainResult


@pytest.fixture(scope="session")
def served_world(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> ServedWorld:
    home = tmp_path_factory.mktemp("served")
    result = train(make_config(home, demo_dir, promote=True, tune=False))  # serving is tested, not selection
    return ServedWorld(home, demo_dir, result)


@pytest.fixture(scope="session")
def server(served_world: ServedWorld) -> Iterator[Server]:
    srv = start_server(
        served_world.home, {"LEADSCORE_MAX_BATCH_LEADS": "200", "LEADSCORE_MAX_BODY_BYTES": str(2 * 1024 * 1024)}
    )
    yield srv
    stop_server(srv)
