"""The FastAPI app factory: state loaded in lifespan, dependencies injected, no scoring logic in routes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from leadscore.settings import Settings
from models.registry import LoadedModel
from models.threshold_analysis import TradeOff
from serving.bodies import (
    DirectRoute,
    document_structs,
    flag_parameter,
    json_response,
    query_flag,
    request_body,
    response_body,
)
from serving.coalescer import ScoreCoalescer
from serving.deps import SCORING_SECURITY, Admin, AnyRole, Served, Services, scoring_call
from serving.drift_store import DriftStore
from serving.errors import PayloadTooLarge, install_error_handlers
from serving.metrics import BodySizeLimit, Metrics, MetricsMiddleware
from serving.model_source import ModelHolder, ModelSource, RegistrySource, Serving
from serving.monitoring import monitoring_report
from serving.results_routes import router as results_router
from serving.results_store import ResultsStore
from serving.schemas import (
    BatchIn,
    BatchOut,
    ErrorOut,
    HealthOut,
    LeadIn,
    MeOut,
    ModelOut,
    ReadyOut,
    ReloadOut,
    ScoreOut,
)
from serving.score_log import DRIFT_EVERY_SECONDS, ScoreLog
from serving.scoring import Threshold, score_leads
from serving.store import KeyStore, make_engine
from serving.threshold_routes import router as threshold_router
from serving.thresholds import InForce, ThresholdService, ThresholdStore, tradeoff_of
from serving.webhook import WebhookSender, check_url

STATIC = Path(__file__).parent / "static"

log = logging.getLogger("leadscore.serving")


# ---------------------------------------------------------------------------------------------
# The factory
# ---------------------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    model_source: ModelSource | None = None,
    keys: KeyStore | None = None,
    thresholds: ThresholdStore | None = None,
) -> FastAPI:
    """Build the app; the model is loaded and the reload poller started in ``lifespan``."""
    check_settings(settings)
    source = model_source or RegistrySource(
        settings.resolved_tracking_uri,
        settings.resolved_registry_uri,
        settings.model_name,
        settings.model_alias,
        settings.model_cache_dir,
    )
    metrics = Metrics()
    services = Services()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = thresholds.engine if thresholds else make_engine(settings.resolved_database_url)
        app.state.keys = services.keys = keys or KeyStore(engine)
        app.state.threshold_store = thresholds or ThresholdStore(engine)
        app.state.results = results = ResultsStore(engine)
        score_log = services.score_log = _score_log(settings, results, metrics)
        sender = _webhook_sender(settings, results, metrics)
        app.state.drift = drift = DriftStore(engine)
        app.state.thresholds = services.thresholds = ThresholdService(app.state.threshold_store)
        holder = ModelHolder(source, prepare=refresh_thresholds)
        app.state.holder = services.holder = holder
        await asyncio.to_thread(_check_and_record, holder, metrics)
        # Everything loaded so far (libraries, the model) lives as long as the process: keep it out of the
        # cyclic GC, whose full passes over it took ~200 ms and showed as the batch route's p99.
        gc.freeze()
        tasks = [
            asyncio.create_task(_poll(holder, metrics, settings.reload_interval_seconds)),
            asyncio.create_task(_refresh_thresholds(holder, refresh_thresholds, settings.threshold_refresh_seconds)),
            asyncio.create_task(_monitor(app, drift, settings, metrics)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if score_log is not None:
                await asyncio.to_thread(score_log.close)
            if sender is not None:
                await asyncio.to_thread(sender.close)

    app = FastAPI(
        title="Leadscore",
        version="0.1.0",
        description="Calibrated lead scores with reasons. Every route except /healthz and /readyz needs an API key.",
        lifespan=lifespan,
        # None: FastAPI's defaults (instrument when OpenTelemetry providers are configured, checked per request).
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.warnings = []  # shown by /readyz, never failing it (drift, from the monitor task)
    tradeoffs: dict[str, TradeOff] = {}

    def tradeoff(version: str, loaded: LoadedModel | None = None) -> TradeOff:
        """The trade-off of a model version, from the test predictions stored with it (blocking: may fetch an
        older version from the registry; never called on the event loop)."""
        if version not in tradeoffs:
            if loaded is None or loaded.version != version:
                current = services.holder.current
                loaded = current.loaded if current and current.loaded.version == version else source.fetch(version)
            tradeoffs[version] = tradeoff_of(loaded)
        return tradeoffs[version]

    def refresh_thresholds(loaded: LoadedModel) -> InForce:
        """Read (and, for a policy agreed for another version, map once) the cut-offs for a model: blocking."""
        return services.thresholds.refresh(
            loaded.name,
            loaded.version,
            loaded.model.default_cutoffs,
            functools.partial(_tradeoff_with, tradeoff, loaded),
        )

    def in_force(serving: Serving) -> InForce:
        """The cut-offs in force for the served model, from memory."""
        return services.thresholds.in_force(
            serving.loaded.name, serving.loaded.version, serving.loaded.model.default_cutoffs
        )

    def threshold_for(serving: Serving) -> Threshold:
        force = in_force(serving)
        return Threshold(force.cutoffs, force.version)

    app.state.tradeoff = tradeoff
    app.state.in_force = in_force
    app.state.refresh_thresholds = refresh_thresholds
    app.state.champion_version = source.current_version  # blocking: the registry's alias
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)  # inside the metrics: its 413s are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    max_future = timedelta(days=settings.max_future_days)

    # The two scoring routes are the hot path: direct routes (see serving/bodies.py), documented here, and
    # moved ahead of FastAPI's own routes (/openapi.json, /docs...), as routes are matched in order.
    score_call, batch_call = scoring_call(LeadIn, services), scoring_call(BatchIn, services)
    errors: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut} for status in (401, 403, 422, 503)}

    def score_many(serving: Serving, leads: list[LeadIn], explain: bool, batch: bool = False) -> list[ScoreOut]:
        threshold = threshold_for(serving)
        now = datetime.now(UTC)
        log = services.score_log
        features: list[np.ndarray] | None = [] if log is not None else None
        results = score_leads(serving, leads, threshold, now, max_future, explain, batch, features)
        metrics.observe_scores([r.probability for r in results], [r.qualified for r in results])
        if log is not None and features:
            log.add(leads, results, now, "batch" if batch else "api", features[0], serving.loaded.model)
        return results

    coalescer = ScoreCoalescer(score_many, metrics.gathered.observe)

    async def score(request: Request) -> Response:
        """Score one lead from its attributes and touch history (roles crm, admin)."""
        call = await score_call(request)
        explain = query_flag(request, "explain", default=True)
        return json_response(await coalescer.score(call.serving, call.body, explain))

    async def score_batch(request: Request) -> Response:
        """Score up to the configured number of leads (10,000 by default), answers in order (roles crm, admin)."""
        call = await batch_call(request)
        leads = call.body.leads
        if len(leads) > settings.max_batch_leads:
            raise PayloadTooLarge(f"batch of {len(leads)} leads is over the limit of {settings.max_batch_leads}")
        results = await run_in_threadpool(score_many, call.serving, leads, call.body.explain, True)
        return json_response(BatchOut(results=results))

    add_scoring_route = functools.partial(
        app.router.add_api_route, methods=["POST"], route_class_override=DirectRoute, tags=["scoring"]
    )
    add_scoring_route(
        "/v1/score",
        score,
        openapi_extra={
            **request_body(LeadIn),
            **flag_parameter("explain", True, "Compute fit, engagement and reasons."),
            **SCORING_SECURITY,
        },
        responses={**response_body(ScoreOut, "The lead's score."), **errors},
    )
    add_scoring_route(
        "/v1/score/batch",
        score_batch,
        openapi_extra={**request_body(BatchIn), **SCORING_SECURITY},
        responses={
            **response_body(BatchOut, "One answer per lead, in order."),
            **errors,
            413: {"description": "Too many leads", "model": ErrorOut},
        },
    )
    app.router.routes.sort(key=lambda route: not isinstance(route, DirectRoute))  # stable: the rest keep their order

    @app.get("/healthz", response_model=HealthOut, tags=["ops"])
    async def healthz() -> HealthOut:
        """Alive (no key needed)."""
        return HealthOut(status="ok")

    @app.get("/readyz", response_model=ReadyOut, tags=["ops"], responses={503: {"model": ReadyOut}})
    async def readyz(request: Request) -> Response:
        """Ready when a model is loaded (no key needed); 503 otherwise. Shows the last reload error."""
        holder: ModelHolder = request.app.state.holder
        current = holder.current
        body = ReadyOut(
            ready=current is not None,
            model_version=current.loaded.version if current else None,
            model_loaded_at=current.loaded_at if current else None,
            last_check_at=holder.last_check_at,
            last_error=holder.last_error,
            warnings=list(request.app.state.warnings),
        )
        return Response(body.model_dump_json(), status_code=200 if current else 503, media_type="application/json")

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus(_: AnyRole) -> Response:
        """Prometheus metrics (any role)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelOut, tags=["model"])
    async def model_info(serving: Served, _: AnyRole) -> ModelOut:
        """Name, version, when and on what the served model was trained, and its test metrics."""
        meta = serving.loaded.model.meta
        return ModelOut(
            name=serving.loaded.name,
            version=serving.loaded.version,
            run_id=serving.loaded.run_id,
            trained_at=meta.get("trained_at"),
            horizon_days=meta.get("horizon_days"),
            split=meta.get("split"),
            windows=meta.get("windows") or {},
            data_fingerprint=meta.get("data_fingerprint") or {},
            metrics={k: float(v) for k, v in (meta.get("metrics") or {}).items()},
            features=len(serving.loaded.model.spec.feature_names),
            loaded_at=serving.loaded_at,
        )

    @app.post("/v1/admin/reload", response_model=ReloadOut, tags=["admin"])
    async def reload(request: Request, _: Admin) -> ReloadOut:
        """Check the champion alias now and swap models if it moved (admin)."""
        holder: ModelHolder = request.app.state.holder
        changed = await asyncio.to_thread(_check_and_record, holder, metrics)
        current = holder.current
        return ReloadOut(
            changed=changed, model_version=current.loaded.version if current else None, error=holder.last_error
        )

    @app.get("/v1/me", response_model=MeOut, tags=["auth"])
    async def me(who: AnyRole) -> MeOut:
        """Who the key belongs to (name and role)."""
        return MeOut(name=who.name, role=who.role, owner=who.owner)

    @app.get("/ui", include_in_schema=False)
    async def ui() -> FileResponse:
        """The threshold page for marketing ops and sales (static; every call it makes needs a key)."""
        return FileResponse(STATIC / "threshold.html", media_type="text/html")

    app.include_router(threshold_router)
    app.include_router(results_router)
    document_structs(app, LeadIn, BatchIn, ScoreOut, BatchOut)
    return app


def check_settings(settings: Settings) -> None:
    """Refuse settings the server cannot run with, before it starts.

    Raises:
        ValueError: naming the LEADSCORE_* setting and what is wrong.
    """
    if settings.webhook_url:
        check_url(settings.webhook_url)
    if settings.webhook_url and not settings.webhook_secret:
        raise ValueError("LEADSCORE_WEBHOOK_URL is set without LEADSCORE_WEBHOOK_SECRET: hand-overs are sent signed")
    if settings.webhook_url and not settings.score_log:
        raise ValueError(
            "LEADSCORE_WEBHOOK_URL needs the score log (LEADSCORE_SCORE_LOG=true): it finds the hand-overs"
        )


def _score_log(settings: Settings, results: ResultsStore, metrics: Metrics) -> ScoreLog | None:
    if not settings.score_log:
        return None
    log_writer = ScoreLog(
        results,
        timedelta(days=settings.score_log_retention_days),
        flush_seconds=settings.score_log_flush_seconds,
        on_written=metrics.observe_score_log,
        on_dropped=metrics.score_log_dropped.inc,
        on_failed=metrics.score_log_failures.inc,
        notify=bool(settings.webhook_url),
        drift=DriftStore(results.engine) if settings.score_log else None,
        # the counts are written at least as often as the monitor reads them (every 10 s by default)
        drift_every_seconds=min(DRIFT_EVERY_SECONDS, settings.monitoring_interval_seconds),
    )
    log_writer.start()
    return log_writer


def _webhook_sender(settings: Settings, results: ResultsStore, metrics: Metrics) -> WebhookSender | None:
    if not settings.webhook_url:
        return None
    sender = WebhookSender(
        results,
        settings.webhook_url,
        settings.webhook_secret or "",
        timeout_seconds=settings.webhook_timeout_seconds,
        max_backoff_seconds=settings.webhook_max_backoff_seconds,
        on_result=lambda result: metrics.webhook_deliveries.labels(result).inc(),
        on_pending=metrics.webhook_pending.set,
    )
    sender.start()
    return sender


def _check_and_record(holder: ModelHolder, metrics: Metrics) -> bool:
    before = holder.last_error
    changed = holder.check()
    if holder.last_error and holder.last_error != before and "refused" in holder.last_error:
        metrics.reload_failures.inc()
    if holder.current is not None:
        metrics.set_model(holder.current.loaded.name, holder.current.loaded.version)
    return changed


def _tradeoff_with(tradeoff: Any, loaded: LoadedModel, version: str) -> TradeOff:
    return tradeoff(version, loaded)


async def _refresh_thresholds(holder: ModelHolder, refresh: Any, interval: float) -> None:
    """Re-read the cut-offs in force every ``interval`` seconds, off the event loop (decisions made through
    another process show here within that time)."""
    while True:
        await asyncio.sleep(interval)
        current = holder.current
        if current is None:
            continue
        try:
            await asyncio.to_thread(refresh, current.loaded)
        except Exception:  # never let the refresher die; the last cut-offs read stay in force
            log.exception("reading the threshold policy failed")


async def _monitor(app: FastAPI, drift: DriftStore, settings: Settings, metrics: Metrics) -> None:
    """Recompute the drift of the served model every ``monitoring_interval_seconds``: Prometheus gauges, and a
    warning in /readyz when the score or a feature drifted (never a failure)."""
    while True:
        current = app.state.holder.current
        if current is not None:
            try:
                report = await asyncio.to_thread(
                    monitoring_report,
                    drift,
                    current.loaded.model,
                    current.loaded.version,
                    datetime.now(UTC).date(),
                    settings.drift_days,
                    settings.drift_min_scores,
                    settings.drift_min_leads,
                    settings.score_log,
                )
                metrics.set_drift(report)
                app.state.warnings = (
                    [f"drift over the last {report.days} days: {report.status}: {report.explanation}"]
                    if report.status in ("warning", "drift")
                    else []
                )
            except Exception:  # never let the monitor die
                log.exception("computing drift failed")
        await asyncio.sleep(settings.monitoring_interval_seconds)


async def _poll(holder: ModelHolder, metrics: Metrics, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(_check_and_record, holder, metrics)
        except Exception:  # never let the poller die
            log.exception("model reload check failed")


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (one app per worker process), configured from LEADSCORE_* settings."""
    from leadscore.settings import get_settings

    return create_app(get_settings())
