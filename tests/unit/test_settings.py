from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.settings import get_settings


def test_state_lives_under_home_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path / "state"))
    s = get_settings()
    assert s.resolved_tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'leadscore.db'}"
    assert s.artifact_location.startswith("file://") and "state/mlartifacts" in s.artifact_location
    assert not (tmp_path / "state").exists()  # nothing is created until a command asks


def test_mlflow_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_TRACKING_URI", "sqlite:///ours.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert get_settings().resolved_tracking_uri == "http://mlflow.internal:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert get_settings().resolved_tracking_uri == "sqlite:///ours.db"
