from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.demo_data import write_demo_data
from training.pipeline import TrainConfig, TrainResult, train

# Keep matplotlib headless and MLflow quiet in tests; no test relies on a network.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: without the MLFLOW_* URIs that mlflow.set_*_uri export, nor a
    developer's own artifact store."""
    dropped = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LEADSCORE_ARTIFACTS_URI")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(extra)
    return env


_MLFLOW_TEMPLATE: list[Path] = []  # an empty MLflow SQLite store with its schema, made once per session


def seed_mlflow_store(home: Path) -> None:
    """Give ``home`` an empty MLflow SQLite store (``mlflow.db``) unless it has one: MLflow builds a new store's
    schema by running all its migrations (about 2 s per store), so tests copy one built once per session by
    MLflow itself. A store MLflow creates on first use is still exercised by the demo command test (and by
    every clean-clone CI run)."""
    target = home / "mlflow.db"
    if target.exists():
        return
    if not _MLFLOW_TEMPLATE:
        import atexit
        import shutil
        import tempfile

        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="leadscore-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _MLFLOW_TEMPLATE.append(folder / "mlflow.db")
    import shutil

    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], target)


def leadscore(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script as a user does, with ``LEADSCORE_HOME`` set to ``home``."""
    seed_mlflow_store(home)
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        env=clean_env(LEADSCORE_HOME=str(home), COLUMNS="200"),
        check=False,
    )


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def leadscore_in_process(home: Path, *args: str, **env: str) -> CliRun:
    """The same command as :func:`leadscore`, run in this process (no interpreter start and imports: about 1.5
    s less per call). Any exception other than the command's own exit fails the test: a user would have seen a
    traceback. Keep :func:`leadscore` for what needs the real console script."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    seed_mlflow_store(home)
    # as clean_env does for a subprocess: MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI into this
    # process's environment, so an earlier in-process run would otherwise point this one at its store
    unset: dict[str, str | None] = {"MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}
    result = CliRunner().invoke(app, list(args), env={**unset, "LEADSCORE_HOME": str(home), "COLUMNS": "200", **env})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"leadscore {' '.join(args)} raised {result.exception!r}") from result.exception
    return CliRun(result.exit_code, result.stdout, result.stderr)


# ---- shared worlds: a small demo CRM and trained, registered models ----

N_LEADS = 10_000


@dataclass
class TrainedWorld:
    home: Path
    data_dir: Path
    config: TrainConfig
    result: TrainResult
    env: dict[str, str]


def make_config(home: Path, data_dir: Path, **overrides: object) -> TrainConfig:
    seed_mlflow_store(home)
    base = dict(
        data=data_dir,
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_location=(home / "mlartifacts").as_uri(),
        cache_dir=home / "model-cache",
        seed=42,
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, n_leads=N_LEADS, seed=5)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[TrainedWorld]:
    home = tmp_path_factory.mktemp("home")
    config = make_config(home, demo_dir, promote=True)
    result = train(config)
    yield TrainedWorld(
        home=home, data_dir=demo_dir, config=config, result=result, env=clean_env(LEADSCORE_HOME=str(home))
    )
