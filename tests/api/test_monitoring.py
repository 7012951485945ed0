"""Drift through the API: answers of the test window's own mix are stable; a shifted lead-source mix is not."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI

from leadscore.settings import get_settings
from serving.app import create_app
from serving.store import KeyStore, make_engine
from tests.api.conftest import ServedWorld
from tests.conftest import make_config
from training.data import load_crm_data
from training.pipeline import make_examples

HIGH_FIT_SOURCES = ("referral", "event", "partner")  # leads far likelier to convert than the mix


def bodies_at_test_moments(world: ServedWorld, sources: tuple[str, ...] | None, n: int) -> list[dict[str, Any]]:
    """``n`` scoring moments of leads created in the served model's test window, picked at random (the
    reference counts every moment one, as serving counts every answer), optionally only leads of ``sources``."""
    data = load_crm_data(world.data_dir)
    examples = make_examples(data, make_config(world.home, world.data_dir))
    first, last = (
        pd.Timestamp(x, tz="UTC") for x in world.result.model.meta["windows"]["test_leads_created"].split(" .. ")
    )
    until = pd.Timestamp(world.result.model.meta["windows"]["test_moments_until"], tz="UTC") + pd.Timedelta(days=1)
    test = examples[(examples["created_at"] >= first) & (examples["created_at"] < last + pd.Timedelta(days=1))]
    test = test[test["as_of"] < until]
    if sources is not None:
        test = test[test["lead_source"].isin(sources)]
    picked = test.sample(n=min(n, len(test)), random_state=3)  # moments, as the reference counts them
    assert len(picked) == n, f"only {len(picked)} test moments"
    leads = data.leads.set_index("lead_id")
    touches = data.touchpoints.groupby("lead_id")
    out = []
    for row in picked.itertuples(index=False):
        attrs = {c: leads.at[row.lead_id, c] for c in leads.columns if c != "created_at"}
        mine = touches.get_group(row.lead_id) if row.lead_id in touches.groups else data.touchpoints.iloc[:0]
        out.append(
            {
                "lead_id": row.lead_id,
                "created_at": row.created_at.isoformat(),
                "as_of": row.as_of.isoformat(),
                "attributes": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in attrs.items()},
                "touchpoints": [
                    {"occurred_at": t.occurred_at.isoformat(), "touch_type": t.touch_type, "channel": t.channel}
                    for t in mine.itertuples()
                    if t.occurred_at <= row.as_of
                ],
            }
        )
    return out


Seen = tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]


def monitored(world: ServedWorld, home: Path, bodies: list[dict[str, Any]]) -> Seen:
    """Score ``bodies`` through a fresh app on the served model (an empty store), then read /v1/monitoring
    (after 20 answers, then after all of them), and /readyz and /metrics once the monitor has run again."""
    settings = get_settings(
        home=home,
        tracking_uri=f"sqlite:///{world.home / 'mlflow.db'}",
        score_log_flush_seconds=0.1,
        drift_min_scores=100,
        drift_min_leads=50,
        drift_days=2,
        monitoring_interval_seconds=0.2,
    )
    key = KeyStore(make_engine(settings.resolved_database_url)).create("crm", owner="crm@test.example")[0]
    auth = {"Authorization": f"Bearer {key}"}

    async def calls(app: FastAPI) -> Seen:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://leadscore", timeout=60) as client:

                async def report(expected: int) -> dict[str, Any]:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        r = (await client.get("/v1/monitoring?days=2", headers=auth)).json()
                        if r["scores"] >= expected:
                            return r
                        await asyncio.sleep(0.1)
                    raise AssertionError(f"drift counts not written: {r}")

                assert (
                    await client.post("/v1/score/batch", json={"leads": bodies[:20]}, headers=auth)
                ).status_code == 200
                few = await report(20)
                for start in range(20, len(bodies), 200):
                    part = {"leads": bodies[start : start + 200], "explain": False}
                    assert (await client.post("/v1/score/batch", json=part, headers=auth)).status_code == 200
                final = await report(len(bodies))
                await asyncio.sleep(0.6)  # the monitor's next turns
                ready = (await client.get("/readyz")).json()
                metrics = (await client.get("/metrics", headers=auth)).text
                return few, final, ready, metrics

    return asyncio.run(calls(create_app(settings)))


@pytest.fixture
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


def psi_of(report: dict[str, Any], feature: str) -> float:
    return next(f["psi"] for f in report["features"] if f["feature"] == feature)


@pytest.mark.usefixtures("no_mlflow_env")
def test_the_test_window_mix_is_stable_and_a_shifted_lead_source_mix_is_not(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    few, same, ready, _ = monitored(served_world, tmp_path / "same", bodies_at_test_moments(served_world, None, 600))
    assert few["status"] == "not enough data" and few["scores"] == 20 and few["score_psi"] is None
    assert few["min_scores"] == 100 and "at least 100 answers of 50 leads" in few["explanation"]
    assert same["scores"] == 600 and same["volume"][-1]["scores"] + same["volume"][0]["scores"] == 600
    assert same["score_psi"] < 0.1, same["explanation"]
    assert psi_of(same, "attr_lead_source") < 0.1
    assert same["unseen_categories"]["lead_source"] == 0.0
    assert ready["ready"] is True and ready["warnings"] == []

    _, shifted, ready, metrics = monitored(
        served_world, tmp_path / "shifted", bodies_at_test_moments(served_world, HIGH_FIT_SOURCES, 180)
    )
    assert shifted["score_psi"] >= 0.1, shifted["explanation"]
    assert psi_of(shifted, "attr_lead_source") >= 0.25
    assert shifted["status"] in ("warning", "drift") and "attr_lead_source" in shifted["explanation"]
    assert shifted["features"][0]["psi"] >= psi_of(shifted, "attr_lead_source")  # worst first
    assert (
        ready["ready"] is True and len(ready["warnings"]) == 1 and "drift over the last 2 days" in ready["warnings"][0]
    )
    assert f'leadscore_drift_psi{{column="score"}} {shifted["score_psi"]}' in metrics
    assert "leadscore_drift_status 1.0" in metrics or "leadscore_drift_status 2.0" in metrics


@pytest.mark.usefixtures("no_mlflow_env")
def test_drift_counts_wait_in_memory_between_writes_and_none_is_lost_at_shutdown(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    """The score log is written every 0.1 s; the drift counts only every monitoring interval (here an hour): the
    answers are in the log while the counts wait, and shutting down writes them all."""
    from serving.drift_store import DriftStore
    from serving.results_store import ResultsStore

    settings = get_settings(
        home=tmp_path,
        tracking_uri=f"sqlite:///{served_world.home / 'mlflow.db'}",
        score_log_flush_seconds=0.1,
        monitoring_interval_seconds=3600,
    )
    engine = make_engine(settings.resolved_database_url)
    key = KeyStore(engine).create("crm", owner="crm@test.example")[0]
    bodies = bodies_at_test_moments(served_world, None, 30)

    def counted() -> int:
        version, today = served_world.result.model_version, datetime.now(UTC).date()
        counts = DriftStore(engine).counts(version, [today - timedelta(days=1), today])
        return int(counts.loc[counts["column"] == "score", "count"].sum())

    async def calls(app: FastAPI) -> tuple[int, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://leadscore", timeout=60) as client:
                part = {"leads": bodies, "explain": False}
                auth = {"Authorization": f"Bearer {key}"}
                assert (await client.post("/v1/score/batch", json=part, headers=auth)).status_code == 200
                deadline = time.monotonic() + 30
                while len(ResultsStore(engine).scores()) < len(bodies) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return len(ResultsStore(engine).scores()), counted()

    logged, counted_while_serving = asyncio.run(calls(create_app(settings)))
    assert logged == 30 and counted_while_serving == 0
    assert counted() == 30
