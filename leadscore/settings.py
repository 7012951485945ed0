"""All configuration, read from ``LEADSCORE_*`` environment variables on demand."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Leadscore settings; every field can be set as ``LEADSCORE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", extra="ignore")

    home: Path = Field(Path(".leadscore"), description="Directory holding all state (MLflow, databases, caches).")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; MLFLOW_TRACKING_URI wins, else SQLite under home."
    )
    registry_uri: str | None = Field(None, description="MLflow registry URI; defaults to the tracking URI.")
    artifacts_uri: str | None = Field(
        None,
        description="Where new MLflow experiments keep artifacts (s3://..., gs://..., file:///shared/...): set it "
        "when the tracking store is a database and training runs where its disk is not kept (a container, a "
        "Kubernetes job). Unset: an MLflow server's own store, else mlartifacts under home.",
    )
    health_url: str | None = Field(
        None,
        description="What `leadscore healthcheck` (the image's HEALTHCHECK) probes; unset: this host's server, "
        "http://127.0.0.1:PORT/healthz. For a Dask scheduler container http://127.0.0.1:8787/health, for a "
        "worker its --dashboard-address's /health.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the key and threshold store; SQLite under home by default."
    )
    model_name: str = Field("leadscore", description="Registered model name.")
    model_alias: str = Field("champion", description="Registry alias the server serves.")
    experiment: str = Field("leadscore", description="MLflow experiment for training runs.")
    seed: int = Field(42, description="Random seed for training.")
    horizon_days: int = Field(90, description="Conversion horizon in days.")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    reload_interval_seconds: float = Field(30.0, description="How often the server checks the champion alias.")
    threshold_refresh_seconds: float = Field(
        1.0, gt=0, description="How often each server process re-reads the threshold policy in force (seconds)."
    )
    max_body_bytes: int = Field(
        48 * 1024 * 1024,
        description="Largest request body accepted (413 above); a full batch of 10,000 leads with 30 touches each "
        "is about 22 MB.",
    )
    max_batch_leads: int = Field(10_000, description="Largest batch accepted by /v1/score/batch (413 above).")
    max_future_days: int = Field(1, description="Timestamps further than this in the future are rejected.")
    compile_cache_dir: Path | None = Field(
        None,
        description="Where compiled feature and tree code is kept between processes (NUMBA_CACHE_DIR; set, that "
        "wins). Unset: numba-cache under home.",
    )
    score_log: bool = Field(True, description="Keep every score served in the score log (false: off).")
    dask_scheduler: str | None = Field(
        None,
        description="Address of a running Dask scheduler (tcp://host:8786) for --engine dask; unset: a "
        "LocalCluster of one worker per core.",
    )
    dask_connect_seconds: float = Field(30.0, gt=0, description="How long to wait for the Dask scheduler to answer.")
    score_log_retention_days: int = Field(
        400, ge=1, description="Score log rows older than this are deleted (first scores and hand-overs are kept)."
    )
    score_log_flush_seconds: float = Field(
        0.5, gt=0, description="How often each server process writes the scores it served (seconds)."
    )
    webhook_url: str | None = Field(
        None, description="Each lead handed over is POSTed here (at least once, signed; see serving/webhook.py)."
    )
    webhook_secret: str | None = Field(
        None, description="The HMAC-SHA256 key of the webhook's signature (required with a URL)."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="How long one webhook POST may take (seconds).")
    webhook_max_backoff_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts to deliver one hand-over (seconds)."
    )
    drift_days: int = Field(7, ge=1, le=366, description="Default window of /v1/monitoring and its gauges (days).")
    drift_min_scores: int = Field(
        500,
        ge=1,
        description="Fewer leads scored on arrival than this in the window give no drift verdict ('not enough "
        "data'); fewer answers than this give no all-answers figures.",
    )
    drift_min_leads: int = Field(
        100, ge=1, description="Fewer distinct leads than this give no all-answers drift figures either."
    )
    monitoring_interval_seconds: float = Field(
        60.0, gt=0, description="How often each server process recomputes the drift gauges and /readyz warnings."
    )
    performance_weeks: int = Field(26, ge=1, description="Default period of /v1/performance: the last N weeks.")
    log_level: str = "info"
    opentelemetry: bool = Field(
        False,
        description=(
            "FastAPI's native OpenTelemetry instrumentation (traces, metrics and logs to the globally configured "
            "providers). Off by default: /metrics serves Prometheus, and FastAPI checks for providers on every request."
        ),
    )

    @property
    def resolved_tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI wins, then LEADSCORE_TRACKING_URI, then SQLite under home."""
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def resolved_registry_uri(self) -> str:
        env = os.environ.get("MLFLOW_REGISTRY_URI")
        return env or self.registry_uri or self.resolved_tracking_uri

    @property
    def artifact_location(self) -> str | None:
        """Where a new MLflow experiment keeps its runs' artifacts (an experiment keeps the place it was created
        with): ``artifacts_uri`` when set; else, with an MLflow tracking server (``http(s)://``, ``databricks``),
        None, so that the server's own artifact store is used; else ``mlartifacts`` under home."""
        if self.artifacts_uri:
            return self.artifacts_uri
        if self.resolved_tracking_uri.lower().startswith(("http://", "https://", "databricks")):
            return None
        return (self.home / "mlartifacts").resolve().as_uri()

    @property
    def resolved_health_url(self) -> str:
        return self.health_url or f"http://127.0.0.1:{self.port}/healthz"

    @field_validator("artifacts_uri")
    @classmethod
    def _artifacts_uri(cls, value: str | None) -> str | None:
        """Blank is unset; else a URI with a scheme (s3://, gs://, file:///...) or an absolute path (taken as
        file://): a relative path would land wherever the command happens to run."""
        value = None if value is None else value.strip()
        if not value:
            return None
        if "://" in value:
            return value
        if Path(value).is_absolute():
            return Path(value).as_uri()
        raise ValueError(f"{value!r}: give a URI (s3://bucket/path, file:///path) or an absolute path")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'leadscore.db').resolve()}"

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "model-cache"

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.model_alias}"

    def ensure_home(self) -> Path:
        """Create the home directory (called by commands, never on import)."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment now (never at import time)."""
    return Settings(**overrides)  # type: ignore[arg-type]
