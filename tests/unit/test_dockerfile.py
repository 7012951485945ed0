"""What can be checked of the Dockerfile without a Docker engine.

Every check reads the instructions with the comments taken out, as Docker reads them: a name or a value that
is only in a comment configures nothing.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from leadscore.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET_OR_ADDRESS = re.compile(r"URI|URL|DSN|PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
ENV_NAME = re.compile(r"\b(?:LEADSCORE|MLFLOW)_[A-Z0-9_]+\b")


def comment_lines(text: str) -> list[str]:
    """The comment lines (``#`` first on the line, as Docker reads comments), without the ``#``."""
    return [line.strip()[1:].strip() for line in text.splitlines() if line.strip().startswith("#")]


def parse(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """The instructions in order, as (NAME, arguments): comment lines dropped (also inside a continued
    instruction), continuation lines joined."""
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    code = re.sub(r"\\\n\s*", " ", code)
    words = (line.split(None, 1) for line in code.splitlines())
    return [(w[0].upper(), w[1].strip() if len(w) > 1 else "") for w in words if w]


def instructions(name: str, text: str = DOCKERFILE) -> list[str]:
    """The arguments of every ``name`` instruction."""
    return [args for kind, args in parse(text) if kind == name.upper()]


def env_settings(text: str = DOCKERFILE) -> dict[str, str]:
    """The variables the ``ENV`` instructions set (``ENV A=1 B=2`` and the old ``ENV A 1``), with their values."""
    out: dict[str, str] = {}
    for args in instructions("ENV", text):
        words = shlex.split(args)
        if words and "=" not in words[0]:
            out[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, sep, value = word.partition("=")
            assert sep, f"ENV {args!r}: {word!r} is not NAME=value"
            out[name] = value
    return out


def documented_names(text: str = DOCKERFILE) -> set[str]:
    """The LEADSCORE_* and MLFLOW_* names the Dockerfile's comments tell an operator to set."""
    return {name for line in comment_lines(text) for name in ENV_NAME.findall(line)}


def configuration() -> tuple[object, ...]:
    """What the code configures itself with, from the environment as it is now."""
    settings = get_settings()
    return (
        settings.model_dump(),
        settings.resolved_tracking_uri,  # these read MLFLOW_* from the environment when asked
        settings.resolved_registry_uri,
        settings.resolved_database_url,
    )


def read_by_settings(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether setting the environment variable ``name`` to ``value`` reaches the configuration the code uses."""
    monkeypatch.delenv(name, raising=False)
    unset = configuration()
    monkeypatch.setenv(name, value)
    seen = configuration()
    return seen != unset and value in repr(seen)


# ---- the parsing helpers ----------------------------------------------------------------------------


SAMPLE = """\
# Run: docker run -e LEADSCORE_ONLY_IN_A_COMMENT=x image
FROM python:3.11-slim
# ENV LEADSCORE_COMMENTED_OUT=1
ENV A=1 \\
    # a comment inside a continued instruction
    B="two words" \\
    LEADSCORE_HOME=/var/lib/leadscore
ENV OLD_STYLE some value
  # EXPOSE 9999
EXPOSE 8000
"""


def test_a_name_only_in_a_comment_is_not_an_instruction() -> None:
    assert env_settings(SAMPLE) == {
        "A": "1",
        "B": "two words",
        "LEADSCORE_HOME": "/var/lib/leadscore",
        "OLD_STYLE": "some value",
    }
    assert [kind for kind, _ in parse(SAMPLE)] == ["FROM", "ENV", "ENV", "EXPOSE"]
    assert not any("ONLY_IN_A_COMMENT" in args or "COMMENTED_OUT" in args for _, args in parse(SAMPLE))
    assert instructions("EXPOSE", SAMPLE) == ["8000"]
    assert instructions("FROM", SAMPLE) == ["python:3.11-slim"]
    # ... but it is documentation: the comments are where the names an operator sets are looked for.
    assert documented_names(SAMPLE) == {"LEADSCORE_ONLY_IN_A_COMMENT", "LEADSCORE_COMMENTED_OUT"}


def test_read_by_settings_tells_a_real_setting_from_a_made_up_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_by_settings("LEADSCORE_DATABASE_URL", "postgresql+psycopg://db/leadscore", monkeypatch)
    assert not read_by_settings("LEADSCORE_NOT_A_SETTING", "postgresql+psycopg://db/leadscore", monkeypatch)
    assert not read_by_settings("MLFLOW_NOT_READ", "http://mlflow:5000", monkeypatch)


# ---- the Dockerfile ---------------------------------------------------------------------------------


def test_every_copied_path_exists() -> None:
    copies = instructions("COPY")
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), source


def test_every_package_is_copied_before_the_install() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    steps = parse()
    (install,) = [i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "pip install" in args]
    copied = {shlex.split(args)[0].rstrip("/") for kind, args in steps[:install] if kind == "COPY"}
    for pattern in packages["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied before pip install"


def test_runs_as_non_root_and_exposes_8000_with_a_healthcheck() -> None:
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert instructions("EXPOSE") == ["8000"]
    (health,) = instructions("HEALTHCHECK")
    argv = json.loads(health.split(" CMD ", 1)[1])
    assert argv == ["leadscore", "healthcheck"]  # a real command (tests/integration/test_cli.py runs it)
    assert get_settings().resolved_health_url == "http://127.0.0.1:8000/healthz"  # the image's server, by default
    (base,) = instructions("FROM")
    assert base.startswith("python:") and "slim" in base


def test_command_is_a_real_entry_point() -> None:
    (cmd,) = instructions("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["leadscore", "serve"] and "0.0.0.0" in argv
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, func = scripts["leadscore"].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func))  # the console script (leadscore.cli:main runs leadscore.cli:app)
    names = {c.name or c.callback.__name__ for c in module.app.registered_commands}
    assert {"serve", "healthcheck"} <= names  # the image's CMD and its HEALTHCHECK


def test_the_image_sets_only_settings_the_code_reads_and_no_secret_or_address(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_settings()
    assert env, "no ENV instruction found"
    for name, value in env.items():
        assert not SECRET_OR_ADDRESS.search(name), f"ENV bakes {name} into the image: it belongs to the deployment"
        assert "://" not in value, f"ENV {name}={value} bakes an address into the image"
        if name.startswith("LEADSCORE_"):
            assert read_by_settings(name, value, monkeypatch), f"ENV {name} is not a setting leadscore reads"
    # The state directory the image creates and hands to its user is the one the code uses.
    monkeypatch.setenv("LEADSCORE_HOME", env["LEADSCORE_HOME"])
    assert get_settings().home == Path(env["LEADSCORE_HOME"])
    assert any(env["LEADSCORE_HOME"] in args and "chown" in args for args in instructions("RUN"))


def test_the_configuration_it_documents_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    documented = documented_names()
    # What the image leaves to the deployment: where MLflow is and where keys and thresholds are kept.
    assert {"MLFLOW_TRACKING_URI", "LEADSCORE_DATABASE_URL"} <= documented
    for name in documented:
        assert name not in env_settings(), f"{name} is documented as the deployment's, but the image sets it"
        value = "postgresql+psycopg://leadscore@db:5432/leadscore"
        assert read_by_settings(name, value, monkeypatch), f"the Dockerfile documents {name}, which nothing reads"
    for other in ("MLFLOW_REGISTRY_URI", "LEADSCORE_TRACKING_URI", "LEADSCORE_REGISTRY_URI"):
        monkeypatch.delenv(other, raising=False)  # mlflow.set_registry_uri exports it in this process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", "postgresql+psycopg://leadscore@db:5432/leadscore")
    settings = get_settings()
    assert settings.resolved_tracking_uri == "http://mlflow:5000"
    assert settings.resolved_registry_uri == "http://mlflow:5000"  # the registry follows the tracking server
    assert settings.resolved_database_url == "postgresql+psycopg://leadscore@db:5432/leadscore"


def test_the_documented_postgresql_url_has_its_driver_installed() -> None:
    # The run line documents a postgresql+psycopg:// URL: the image installs the extra that brings psycopg.
    schemes = {m for line in comment_lines(DOCKERFILE) for m in re.findall(r"postgresql\+(\w+)://", line)}
    assert schemes == {"psycopg"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (install,) = [args for args in instructions("RUN") if "pip install" in args]
    chosen = re.search(r"\.\[([\w,]+)\]", install)
    assert chosen, install
    drivers = [dep for extra in chosen.group(1).split(",") for dep in extras[extra]]
    assert any(dep.startswith("psycopg") for dep in drivers), drivers
