from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.settings import get_settings


def test_state_lives_under_home_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MLFLOW_TRACKING_URI", "LEADSCORE_TRACKING_URI", "LEADSCORE_ARTIFACTS_URI", "LEADSCORE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path / "state"))
    s = get_settings()
    assert s.resolved_tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'leadscore.db'}"
    assert s.artifact_location.startswith("file://") and "state/mlartifacts" in s.artifact_location
    assert not (tmp_path / "state").exists()  # nothing is created until a command asks


def test_artifacts_go_where_set_else_to_a_tracking_server_else_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "LEADSCORE_TRACKING_URI", "LEADSCORE_ARTIFACTS_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path / "state"))
    assert get_settings().artifact_location == (tmp_path / "state" / "mlartifacts").as_uri()
    monkeypatch.setenv("LEADSCORE_TRACKING_URI", "postgresql+psycopg://mlflow@db/mlflow")
    assert get_settings().artifact_location == (tmp_path / "state" / "mlartifacts").as_uri()  # a database: here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.internal")
    assert get_settings().artifact_location is None  # the tracking server's own artifact store
    monkeypatch.setenv("LEADSCORE_ARTIFACTS_URI", " s3://models/leadscore ")
    assert get_settings().artifact_location == "s3://models/leadscore"
    monkeypatch.setenv("LEADSCORE_ARTIFACTS_URI", "/shared/mlartifacts")
    assert get_settings().artifact_location == "file:///shared/mlartifacts"
    monkeypatch.setenv("LEADSCORE_ARTIFACTS_URI", "  ")
    assert get_settings().artifact_location is None  # blank is unset: the tracking server's store again
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    assert get_settings().artifact_location is None
    from pydantic import ValidationError

    monkeypatch.setenv("LEADSCORE_ARTIFACTS_URI", "arts")
    with pytest.raises(ValidationError, match="give a URI"):
        get_settings()  # a relative path would land wherever the command runs


def test_the_health_url_follows_the_port_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_HEALTH_URL", raising=False)
    monkeypatch.setenv("LEADSCORE_PORT", "9000")
    assert get_settings().resolved_health_url == "http://127.0.0.1:9000/healthz"
    monkeypatch.setenv("LEADSCORE_HEALTH_URL", "http://127.0.0.1:8787/health")
    assert get_settings().resolved_health_url == "http://127.0.0.1:8787/health"


def test_mlflow_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_TRACKING_URI", "sqlite:///ours.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert get_settings().resolved_tracking_uri == "http://mlflow.internal:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert get_settings().resolved_tracking_uri == "sqlite:///ours.db"


def test_the_largest_documented_batch_fits_the_default_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 leads (the batch limit) with 30 touches each, as a CRM sends them, is under the body limit."""
    import json

    from leadscore.settings import get_settings

    for name in ("LEADSCORE_MAX_BODY_BYTES", "LEADSCORE_MAX_BATCH_LEADS"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings()
    touch = {"occurred_at": "2026-03-01T10:00:00+00:00", "touch_type": "pricing_page", "channel": "web"}
    lead = {
        "lead_id": "0012345678",
        "created_at": "2026-02-01T09:30:00+00:00",
        "attributes": {"lead_source": "paid_search", "industry": "software", "company_size": "201-1000"},
        "touchpoints": [touch] * 30,
        "as_of": "2026-05-01T00:00:00+00:00",
    }
    body = json.dumps({"leads": [lead] * settings.max_batch_leads, "explain": False})
    assert 15_000_000 < len(body) < settings.max_body_bytes
