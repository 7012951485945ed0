"""FastAPI's native OpenTelemetry instrumentation follows the LEADSCORE_OPENTELEMETRY setting."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from leadscore.settings import get_settings
from serving.app import create_app
from tests.conftest import TrainedWorld


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A configured global tracer provider (as an OpenTelemetry set-up would install), recording spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    return exporter


@pytest.mark.parametrize("switched_on", [True, False])
def test_requests_are_traced_only_when_opentelemetry_is_switched_on(
    trained: TrainedWorld, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, switched_on: bool
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings(home=trained.home, opentelemetry=switched_on)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    traced = [span.name for span in spans.get_finished_spans() if "/healthz" in span.name]
    assert bool(traced) is switched_on, traced
