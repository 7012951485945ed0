"""Drift through the API: answers of the test window's own mix are stable; a shifted lead-source mix is not."""

from __future__ import annotations

import asyncio
import functools
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
from training.data import CRMData, load_crm_data
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


@functools.cache
def _crm_data(data_dir: Path) -> CRMData:
    """The served world's data, read once for the tests of this module (they only read it)."""
    return load_crm_data(data_dir)


def bodies_on_schedule(
    world: ServedWorld,
    schedule: str,
    sources: tuple[str, ...] | None = None,
    arrival: bool = True,
    weeks: int = 26,
    arrival_minutes: float = 2,
) -> list[dict[str, Any]]:
    """The served model's test leads as a CRM would score them while they are open: on arrival
    (``arrival_minutes`` after creation, when ``arrival``), then ``weekly`` (every 7 days after creation,
    ``weeks`` times) or at ``every touch`` (a minute after each), up to the end of the test window; optionally
    only leads of ``sources``."""
    data = _crm_data(world.data_dir)
    first, last = (
        pd.Timestamp(x, tz="UTC") for x in world.result.model.meta["windows"]["test_leads_created"].split(" .. ")
    )
    until = pd.Timestamp(world.result.model.meta["windows"]["test_moments_until"], tz="UTC") + pd.Timedelta(days=1)
    leads = data.leads[(data.leads["created_at"] >= first) & (data.leads["created_at"] < last + pd.Timedelta(days=1))]
    if sources is not None:
        leads = leads[leads["lead_source"].isin(sources)]
    closed = data.outcomes.groupby("lead_id")["closed_at"].min()
    touches = data.touchpoints.groupby("lead_id")
    out = []
    for lead in leads.itertuples(index=False):
        created = lead.created_at
        end = min(until, closed.get(lead.lead_id, until))
        mine = touches.get_group(lead.lead_id) if lead.lead_id in touches.groups else data.touchpoints.iloc[:0]
        if schedule == "weekly":
            later = [created + pd.Timedelta(days=7 * k) for k in range(1, weeks + 1)]
        else:
            later = [t + pd.Timedelta(minutes=1) for t in mine["occurred_at"] if t > created]
        first = created + pd.Timedelta(minutes=arrival_minutes)
        moments = ([first] if arrival else []) + sorted(t for t in later if t > first)
        attrs = {c: getattr(lead, c) for c in data.leads.columns if c not in ("created_at", "lead_id")}
        attrs = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in attrs.items()}
        for as_of in moments:
            if as_of >= end:
                break
            out.append(
                {
                    "lead_id": lead.lead_id,
                    "created_at": created.isoformat(),
                    "as_of": as_of.isoformat(),
                    "attributes": attrs,
                    "touchpoints": [
                        {"occurred_at": t.occurred_at.isoformat(), "touch_type": t.touch_type, "channel": t.channel}
                        for t in mine.itertuples()
                        if t.occurred_at <= as_of
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
def test_the_test_window_mix_is_stable_whatever_the_crm_schedule_and_a_shifted_lead_source_mix_is_not(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    """Two halves of the test leads, one scored 40 minutes after creation (an hourly sync) then weekly, the
    other 2 minutes after creation then at every touch: against every test scoring moment both schedules look
    like drift (all_answers), but the verdict, on the leads scored on arrival (the score and the lead
    attributes), is stable. Leads of high-fit sources only: drift, by the lead source."""
    weekly = bodies_on_schedule(served_world, "weekly", weeks=4, arrival_minutes=40)
    every_touch = bodies_on_schedule(served_world, "every touch")
    ids = sorted({b["lead_id"] for b in weekly})
    half = set(np.random.default_rng(5).choice(ids, size=len(ids) // 2, replace=False).tolist())
    results = {}
    for name, bodies in (
        ("weekly", [b for b in weekly if b["lead_id"] in half]),
        ("every touch", [b for b in every_touch if b["lead_id"] not in half]),
    ):
        few, same, ready, _ = monitored(served_world, tmp_path / name, bodies)
        arrived = len({b["lead_id"] for b in bodies})  # every lead is scored within the hour after its creation
        assert few["status"] == "not enough data" and few["score_psi"] is None and few["arrivals"] <= 20
        assert "a verdict needs at least 100" in few["explanation"]
        assert same["scores"] == len(bodies) and same["arrivals"] == arrived >= 300 and same["on_arrival"] is True
        assert same["status"] == "stable" and same["score_psi"] < 0.1, same["explanation"]
        assert psi_of(same, "attr_lead_source") < 0.1
        on_arrival = {f["feature"] for f in same["features"]}
        assert on_arrival and all(name.startswith("attr_") for name in on_arrival)  # attributes only on arrival ...
        touch = {"engagement_decayed", "days_since_created", "days_since_last_touch", "n_touches_7d"}
        assert touch <= {f["feature"] for f in same["all_answers"]["features"]}  # ... touch features in all answers
        # the schedule alone: the old verdict, on all answers, was a false alarm
        assert same["all_answers"]["score_psi"] >= 0.1 and same["all_answers"]["status"] in ("warning", "drift")
        assert same["unseen_categories"]["lead_source"] == 0.0
        assert ready["ready"] is True and ready["warnings"] == []
        results[name] = same
    assert results["weekly"]["scores"] > 2 * results["weekly"]["arrivals"]  # scored again after arrival

    _, shifted, ready, metrics = monitored(
        served_world, tmp_path / "shifted", bodies_on_schedule(served_world, "every touch", HIGH_FIT_SOURCES)
    )
    assert shifted["arrivals"] >= 100 and shifted["score_psi"] >= 0.1, shifted["explanation"]
    assert psi_of(shifted, "attr_lead_source") >= 0.25
    assert shifted["status"] in ("warning", "drift") and "attr_lead_source" in shifted["explanation"]
    assert "leads scored on arrival" in shifted["explanation"]
    assert shifted["features"][0]["psi"] >= psi_of(shifted, "attr_lead_source")  # worst first
    assert (
        ready["ready"] is True and len(ready["warnings"]) == 1 and "drift over the last 2 days" in ready["warnings"][0]
    )
    assert f'leadscore_drift_psi{{column="score"}} {shifted["score_psi"]}' in metrics
    assert "leadscore_drift_status 1.0" in metrics or "leadscore_drift_status 2.0" in metrics


@pytest.mark.usefixtures("no_mlflow_env")
def test_without_answers_on_arrival_there_is_no_verdict_and_all_answers_are_shown(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    """A CRM that only scores weekly, never as leads arrive: "not enough data", with the all-answers figures
    (which a weekly schedule alone pushes over the drift level) for reading."""
    bodies = bodies_on_schedule(served_world, "weekly", arrival=False, weeks=2)[:400]
    _, report, ready, _ = monitored(served_world, tmp_path / "weekly", bodies)
    assert report["arrivals"] == 0 and report["status"] == "not enough data" and report["score_psi"] is None
    assert "0 leads scored on arrival" in report["explanation"] and "all answers: score PSI" in report["explanation"]
    assert report["all_answers"]["status"] in ("warning", "drift") and report["all_answers"]["features"]
    assert ready["warnings"] == []


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


def test_an_answer_counts_on_arrival_once_per_lead_within_an_hour_of_creation(served_world: ServedWorld) -> None:
    from serving.drift_store import ARRIVAL, LEADS, DriftCounter

    model = served_world.result.model
    counter = DriftCounter()
    n = len(model.spec.feature_names)
    day = datetime(2026, 3, 2, tzinfo=UTC).date()

    def arrivals(ids: list[str], ages: list[float], on: Any = day) -> tuple[int, int, int]:
        p = np.linspace(0.05, 0.95, len(ids))
        out = counter.count(on, "1", model, ids, [{}] * len(ids), p, np.zeros((len(ids), n)), np.array(ages))
        arrived = sum(v for (_, _, c, _), v in out.items() if c == ARRIVAL + "score")
        answers = sum(v for (_, _, c, _), v in out.items() if c == "score")
        return arrived, answers, out[on.isoformat(), "1", LEADS, 0]

    # a at 1 min (arrival), a again (not its first answer), b at 2 h, c before its creation, d at 59 min 59 s
    assert arrivals(["a", "a", "b", "c", "d"], [60, 120, 7200, -5, 3599]) == (2, 5, 4)
    assert arrivals(["a", "e"], [10, 3600]) == (0, 2, 1)  # a was answered today already; e at exactly an hour
    assert arrivals(["a"], [10], day + timedelta(days=1)) == (1, 1, 1)  # a new day forgets (documented)
    # a re-scoring run of 200,000 old leads fills the distinct-leads memory, not the arrivals'
    old = [f"old{i}" for i in range(200_000)]
    assert arrivals(old, [86_400.0] * len(old), day + timedelta(days=1)) == (0, 200_000, 200_000)
    assert arrivals(["f", "g"], [60, 60], day + timedelta(days=1)) == (2, 2, 0)  # leads no longer counted; arrivals are
    # only the verdict's columns are counted on arrival: the score and the lead attributes, no touch feature
    out = counter.count(day, "1", model, ["h"], [{}], np.array([0.5]), np.zeros((1, n)), np.array([5.0]))
    on_arrival = {c[len(ARRIVAL) :] for (_, _, c, _) in out if c.startswith(ARRIVAL)}
    attributes = {i.name for i in model.spec.feature_infos() if i.kind == "attribute"}
    assert attributes and on_arrival == {"score", *attributes}
