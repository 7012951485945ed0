"""What can be checked of the Dockerfile without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def test_every_copied_path_exists() -> None:
    for args in instructions("COPY"):
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), source


def test_runs_as_non_root_and_exposes_8000_with_a_healthcheck() -> None:
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert instructions("EXPOSE") == ["8000"]
    (health,) = instructions("HEALTHCHECK")
    assert "/healthz" in health
    assert instructions("FROM")[0].startswith("python:") and "slim" in instructions("FROM")[0]


def test_command_is_a_real_entry_point() -> None:
    (cmd,) = instructions("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["leadscore", "serve"] and "0.0.0.0" in argv
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["leadscore"].split(":")
    import importlib

    app = getattr(importlib.import_module(module), func)
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert "serve" in names


def test_configuration_comes_from_the_environment() -> None:
    assert "MLFLOW_TRACKING_URI" in DOCKERFILE and "LEADSCORE_DATABASE_URL" in DOCKERFILE
    assert not re.search(r"ENV\s+.*(MLFLOW_TRACKING_URI|LEADSCORE_DATABASE_URL)=", DOCKERFILE)
