"""Prometheus metrics of one app instance (own registry, so tests and apps never share counters).

With several worker processes (``leadscore serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``), every
worker writes its values to files there and ``/metrics`` adds them all up, whichever worker answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class Metrics:
    def __init__(self) -> None:
        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry()
        self._served: tuple[str, str] | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self.requests = Counter(
            "leadscore_requests_total", "HTTP requests", ("route", "method", "status"), registry=self.registry
        )
        self.latency = Histogram(
            "leadscore_request_latency_seconds",
            "Request latency",
            ("route",),
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "leadscore_errors_total", "Responses with status >= 400", ("route", "status"), registry=self.registry
        )
        self.scores = Histogram(
            "leadscore_probability",
            "Served probabilities",
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
            registry=self.registry,
        )
        self.scored = Counter("leadscore_leads_scored_total", "Leads scored", registry=self.registry)
        self.gathered = Histogram(
            "leadscore_score_gathered_requests",
            "Concurrent /v1/score requests scored together in one model call (when the server gathers them)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.qualified = Counter("leadscore_leads_qualified_total", "Leads scored as qualified", registry=self.registry)
        self.model_version = Gauge(
            "leadscore_model_version",
            "Served model version (1 on the version served, 0 on versions served before)",
            ("name", "version"),
            registry=self.registry,
            multiprocess_mode="max",  # 1 while any worker serves that version
        )
        self.reload_failures = Counter(
            "leadscore_model_reload_failures_total", "Model versions refused on reload", registry=self.registry
        )
        self.score_log_rows = Counter(
            "leadscore_score_log_rows_total", "Scores written to the score log", registry=self.registry
        )
        self.score_log_dropped = Counter(
            "leadscore_score_log_dropped_total",
            "Scores not logged because too many waited to be written (the database was unreachable)",
            registry=self.registry,
        )
        self.score_log_failures = Counter(
            "leadscore_score_log_write_failures_total",
            "Failed writes of the score log (retried)",
            registry=self.registry,
        )
        self.hand_overs = Counter(
            "leadscore_hand_overs_total", "Leads handed over to sales (first qualified answer)", registry=self.registry
        )
        self.webhook_deliveries = Counter(
            "leadscore_webhook_deliveries_total",
            "Attempts to deliver a hand-over to the webhook, by result (delivered, failed)",
            ("result",),
            registry=self.registry,
        )
        self.drift_psi = Gauge(
            "leadscore_drift_psi",
            "PSI of the served model's answers of the last LEADSCORE_DRIFT_DAYS days against its test window, "
            "by column (score or a feature), the verdict's; -1 when the last report has no figure for the column",
            ("column",),
            registry=self.registry,
            multiprocess_mode="max",
        )
        self._psi_columns: set[str] = set()
        self.drift_status = Gauge(
            "leadscore_drift_status",
            "Drift verdict: -1 not enough data or no reference, 0 stable, 1 warning, 2 drift",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.webhook_pending = Gauge(
            "leadscore_webhook_pending",
            "Hand-overs not yet delivered to the webhook",
            registry=self.registry,
            multiprocess_mode="max",
        )

    def observe_request(self, route: str, method: str, status: int, start: float) -> None:
        """Count and time one request (``start``: its ``perf_counter``)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a few microseconds: look each combination up once
            error = self.errors.labels(route, str(status)) if status >= 400 else None
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route), error)
            self._children[key] = children
        requests, latency, error = children
        requests.inc()
        latency.observe(time.perf_counter() - start)
        if error is not None:
            error.inc()

    def observe_scores(self, probabilities: list[float], qualified: list[bool]) -> None:
        for p in probabilities:
            self.scores.observe(p)
        self.scored.inc(len(probabilities))
        self.qualified.inc(sum(qualified))

    def observe_score_log(self, rows: int, handed_over: int) -> None:
        """Count one write of the score log: scores written and leads handed over by them."""
        self.score_log_rows.inc(rows)
        self.hand_overs.inc(handed_over)

    def set_drift(self, report: Any) -> None:
        """Set the drift gauges from a monitoring report (serving.schemas.MonitoringOut)."""
        codes = {"stable": 0, "warning": 1, "drift": 2}
        self.drift_status.set(codes.get(report.status, -1))
        values = {feature.feature: feature.psi for feature in report.features}
        if report.score_psi is not None:
            values["score"] = report.score_psi
        for column in self._psi_columns - set(values):  # no figure now: not the last report's old value
            self.drift_psi.labels(column).set(-1)
        for column, value in values.items():
            self.drift_psi.labels(column).set(value)
        self._psi_columns |= set(values)

    def set_model(self, name: str, version: str) -> None:
        # Not ``clear()``: labels cannot be removed in multiprocess mode, so earlier versions go to 0.
        if self._served is not None and self._served != (name, version):
            self.model_version.labels(*self._served).set(0)
        self.model_version.labels(name, version).set(1)
        self._served = (name, version)

    def exposition(self) -> bytes:
        """The text format for ``/metrics``: this process's registry, or every worker's values added up."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared_dir)
        return generate_latest(registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", None) or "unmatched", scope["method"], status, start)


DRAIN_FACTOR = 8  # an oversize body is read and dropped up to this many limits before the 413 is sent


class BodySizeLimit:
    """Pure ASGI middleware: 413 for a body over ``limit`` bytes, by header or while streaming.

    The rest of the body is read and dropped before the answer is sent (up to ``DRAIN_FACTOR`` limits): a
    server that answers while the client is still uploading closes a connection with unread data, and the
    client sees "connection reset by peer" instead of the 413 and its message.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif key == b"transfer-encoding":
                chunked = True
        if length is not None and length > self.limit:
            await _drain(receive, self.limit * DRAIN_FACTOR)
            await _reject(send, self.limit)
            return
        if length is not None and not chunked:  # the server delivers exactly that many bytes: nothing to count
            await self.app(scope, receive, send)
            return
        received = 0
        rejected = False

        async def limited_receive() -> Any:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    rejected = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _drain(receive, self.limit * DRAIN_FACTOR - received)
            await _reject(send, self.limit)


class _TooLarge(Exception):
    pass


async def _drain(receive: Callable[[], Awaitable[Any]], budget: int) -> None:
    """Read and drop the rest of a request body, at most ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _reject(send: Callable[[Any], Awaitable[None]], limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
