"""FastAPI's native OpenTelemetry instrumentation follows the LEADSCORE_OPENTELEMETRY setting."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
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


async def healthz(app: FastAPI) -> int:
    """``GET /healthz`` through the app, started and stopped as a server would (lifespan)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadscore") as client:
            return (await client.get("/healthz")).status_code


@pytest.mark.parametrize("switched_on", [True, False])
def test_requests_are_traced_only_when_opentelemetry_is_switched_on(
    trained: TrainedWorld, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, switched_on: bool
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(get_settings(home=trained.home, opentelemetry=switched_on))
    assert asyncio.run(healthz(app)) == 200
    traced = [span.name for span in spans.get_finished_spans() if "/healthz" in span.name]
    assert bool(traced) is switched_on, traced
