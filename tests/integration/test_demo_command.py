"""The README's main job, minus the blocking server: demo data -> train -> promote -> keys."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from models.registry import configure_tracking
from serving.store import KeyStore, make_engine
from tests.conftest import clean_env


def test_demo_builds_everything_under_one_home(tmp_path: Path) -> None:
    home = tmp_path / "state"
    env = clean_env(LEADSCORE_HOME=str(home))
    env.pop("NUMBA_CACHE_DIR")  # as on a user's machine: the command chooses where compiled code is kept
    root = Path(__file__).resolve().parents[2]
    packages = [root / name for name in ("features", "models", "training", "serving", "leadscore")]
    before = {path for package in packages for path in package.rglob("*.nbi")}
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", "demo", "--leads", "4000", "--no-serve"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    keys = {m[1]: m[2] for line in lines if (m := re.match(r"^\s+(\w+)\s+(lsk_\S+)$", line))}
    assert set(keys) == {"crm", "marketing", "sales", "admin"}
    assert any("/docs" in line for line in lines)
    store = KeyStore(make_engine(f"sqlite:///{home / 'leadscore.db'}"))
    assert {store.authenticate(k).role for k in keys.values()} == set(keys)  # type: ignore[union-attr]
    configure_tracking(f"sqlite:///{home / 'mlflow.db'}")
    assert MlflowClient().get_model_version_by_alias("leadscore", "champion").version is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing written outside the home
    assert {"mlflow.db", "leadscore.db", "mlartifacts", "demo-data"} <= {p.name for p in home.iterdir()}
    # compiled feature code is kept under the home for the next process, and never in the package folders
    assert list((home / "numba-cache").rglob("*.nbi"))
    assert {path for package in packages for path in package.rglob("*.nbi")} == before


def test_compiled_code_is_kept_only_where_it_can_be_written(tmp_path: Path) -> None:
    """A compile cache that cannot be written (here: under a regular file) would make numba fall back to the
    package's own folders; the command then compiles in memory instead. A writable one is used."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = (
        "from leadscore.cli import keep_compiled_code; keep_compiled_code(); import os; "
        "from features.kernel import KEEP_COMPILED; print(os.environ.get('NUMBA_CACHE_DIR'), KEEP_COMPILED)"
    )
    said = {}
    for name, folder in (("blocked", blocked / "cache"), ("writable", tmp_path / "cache")):
        env = clean_env(LEADSCORE_HOME=str(tmp_path / "home"), LEADSCORE_COMPILE_CACHE_DIR=str(folder))
        env.pop("NUMBA_CACHE_DIR")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
        assert run.returncode == 0, run.stderr
        said[name] = run.stdout.split()
    assert said["blocked"] == ["None", "False"]
    assert said["writable"] == [str((tmp_path / "cache").resolve()), "True"]


def test_a_bad_setting_does_not_stop_the_help_or_commands_that_do_not_use_it(tmp_path: Path) -> None:
    """The compile cache is chosen from the settings before any command runs; a setting that does not hold is
    left to the command that reads it."""
    env = clean_env(LEADSCORE_HOME=str(tmp_path / "home"), LEADSCORE_MAX_BATCH_LEADS="lots")
    run = subprocess.run(
        [sys.executable, "-m", "leadscore", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0 and "demo-data" in run.stdout, run.stderr
