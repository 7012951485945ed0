"""The feedback loop through the API: the score log, hand-overs, outcomes, verdicts and realised results."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from leadscore.settings import get_settings
from serving.app import create_app
from serving.results_store import ResultsStore
from serving.store import KeyStore, make_engine
from tests.api.conftest import ServedWorld, Server
from tests.unit.test_webhook import SECRET, Receiver

MAY = datetime(2025, 5, 1, tzinfo=UTC)


def hot_lead(
    lead_id: str, as_of: datetime, touches: int = 30, source: str = "referral", created: datetime = MAY
) -> dict[str, Any]:
    """A lead that is qualified after its 30 touches (a student at a tiny school with one touch is not)."""
    kinds = ["web_visit", "email_open", "pricing_page", "webinar", "demo_request"]
    hot = {"industry": "software", "company_size": "201-1000", "job_level": "vp"}
    cold = {"industry": "education", "company_size": "1-10", "job_level": "student"}
    return {
        "lead_id": lead_id,
        "created_at": created.isoformat(),
        "attributes": {"lead_source": source, **(hot if touches > 1 else cold)},
        "touchpoints": [
            {
                "occurred_at": (created + timedelta(hours=20 * i)).isoformat(),
                "touch_type": kinds[i % 5],
                "channel": "web",
                "campaign": "spring-webinar" if i == 0 else None,
            }
            for i in range(touches)
        ],
        "as_of": as_of.isoformat(),
    }


def results_store(home: Any) -> ResultsStore:
    return ResultsStore(make_engine(f"sqlite:///{home / 'leadscore.db'}"))


def wait_for(check: Any, seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("not written in time")


def test_every_answer_is_logged_and_the_first_qualified_one_hands_the_lead_over(server: Server) -> None:
    lead_id = f"log-{uuid.uuid4().hex[:8]}"
    early, later = MAY + timedelta(hours=1), MAY + timedelta(days=30)
    with server.client() as c:
        cold = c.post("/v1/score", json=hot_lead(lead_id, early, touches=1), headers=server.headers("crm")).json()
        hot = c.post("/v1/score", json=hot_lead(lead_id, later), headers=server.headers("crm")).json()
        batch = c.post(
            "/v1/score/batch",
            json={"leads": [hot_lead(lead_id, later + timedelta(days=1))], "explain": False},
            headers=server.headers("crm"),
        ).json()["results"]
    assert not cold["qualified"] and hot["qualified"], (cold, hot)
    store = results_store(server.home)
    wait_for(lambda: len(store.scores(lead_id)) == 3)
    rows = store.scores(lead_id)
    assert rows["source"].tolist() == ["api", "api", "batch"]
    assert rows["probability"].tolist() == pytest.approx(
        [cold["probability"], hot["probability"], batch[0]["probability"]]
    )
    assert rows["as_of"].tolist() == [early, later, later + timedelta(days=1)]
    first = store.scored_leads().set_index("lead_id").loc[lead_id]  # the lead's first score, kept for cohorts
    assert (first["lead_source"], first["campaign"]) == ("referral", "spring-webinar")
    assert first["probability"] == pytest.approx(cold["probability"])
    assert rows["threshold_version"].tolist() == [hot["threshold_version"]] * 3
    handed = store.hand_over_of(lead_id)
    assert handed is not None and handed["probability"] == pytest.approx(hot["probability"])
    assert handed["handed_over_at"].replace(tzinfo=UTC) == later
    assert [r["feature"] for r in json.loads(handed["reasons"])] == [r["feature"] for r in hot["reasons"]]
    with server.client() as c:
        metrics = c.get("/metrics", headers=server.headers("marketing")).text
    assert "leadscore_score_log_rows_total" in metrics and "leadscore_hand_overs_total" in metrics


def test_outcomes_are_taken_from_the_crm_idempotently_with_unknown_leads_reported(server: Server) -> None:
    lead_id = f"out-{uuid.uuid4().hex[:8]}"
    row = {"lead_id": lead_id, "outcome": "lost", "closed_at": "2024-06-03T10:00:00Z"}
    with server.client() as c:
        first = c.post("/v1/outcomes", json={"outcomes": [row, row]}, headers=server.headers("crm"))
        again = c.post("/v1/outcomes", json={"outcomes": [row]}, headers=server.headers("admin"))
        won = c.post(
            "/v1/outcomes",
            json={"outcomes": [{**row, "outcome": "won", "amount": 5000}]},
            headers=server.headers("crm"),
        )
        by_sales = c.post("/v1/outcomes", json={"outcomes": [row]}, headers=server.headers("sales"))
        future = c.post(
            "/v1/outcomes",
            json={"outcomes": [row, {**row, "closed_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}]},
            headers=server.headers("crm"),
        )
        bad = c.post(
            "/v1/outcomes", json={"outcomes": [{**row, "outcome": "converted"}]}, headers=server.headers("crm")
        )
        too_many = c.post("/v1/outcomes", json={"outcomes": [row] * 10_001}, headers=server.headers("crm"))
        nobody = c.post("/v1/outcomes", json={"outcomes": [row]})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "received": 2,
        "recorded": 1,
        "unchanged": 1,
        "corrections": 0,
        "unknown_leads": 1,
        "unknown_lead_ids": [lead_id],
        "superseded": 0,
    }
    assert (again.json()["recorded"], again.json()["unchanged"]) == (0, 1)
    assert (won.json()["recorded"], won.json()["corrections"]) == (1, 1)
    assert results_store(server.home).latest_outcomes().set_index("lead_id").loc[lead_id, "outcome"] == "won"
    assert by_sales.status_code == 403 and nobody.status_code == 401
    assert future.status_code == 422 and future.json()["detail"][0]["loc"] == ["body", "outcomes", 1, "closed_at"]
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:4] == ["body", "outcomes", 0, "outcome"]
    assert too_many.status_code == 422


def test_a_call_with_a_leads_history_resent_changes_nothing_and_bad_close_times_are_named(server: Server) -> None:
    """Only a lead's last row of a call counts (earlier rows are superseded, counted): a CRM retrying a call
    that holds a lead's lost then won rows records nothing the second time. Close times before 1970 or whose
    offset leaves year 1..9999 are a 422 naming the row, never a 500."""
    lead_id = f"hist-{uuid.uuid4().hex[:8]}"
    lost = {"lead_id": lead_id, "outcome": "lost", "closed_at": "2025-03-01T10:00:00Z"}
    won = {"lead_id": lead_id, "outcome": "won", "closed_at": "2025-03-09T10:00:00Z", "amount": 900}
    with server.client() as c:
        first = c.post("/v1/outcomes", json={"outcomes": [lost, won]}, headers=server.headers("crm")).json()
        again = c.post("/v1/outcomes", json={"outcomes": [lost, won]}, headers=server.headers("crm")).json()
        times = [
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:00:00+05:00",
            "1969-12-31T23:59:59Z",
            "2025-03-09T10:00:00Z",
        ]
        odd = c.post(
            "/v1/outcomes",
            json={"outcomes": [{**lost, "closed_at": t} for t in times]},
            headers=server.headers("crm"),
        )
    assert (first["recorded"], first["superseded"], first["corrections"]) == (1, 1, 0)
    assert (again["recorded"], again["unchanged"], again["superseded"]) == (0, 1, 1)
    latest = results_store(server.home).latest_outcomes().set_index("lead_id").loc[lead_id]
    assert latest["outcome"] == "won" and latest["amount"] == 900
    assert odd.status_code == 422
    named = {tuple(d["loc"]): d["msg"] for d in odd.json()["detail"]}
    assert named == {
        ("body", "outcomes", 0, "closed_at"): "timestamp out of range",
        ("body", "outcomes", 1, "closed_at"): "timestamp out of range",
        ("body", "outcomes", 2, "closed_at"): "timestamp before 1970",
    }


def test_sales_give_verdicts_with_reasons_from_the_list(server: Server) -> None:
    lead_id = f"fb-{uuid.uuid4().hex[:8]}"
    with server.client() as c:
        c.post("/v1/score", json=hot_lead(lead_id, MAY + timedelta(days=30)), headers=server.headers("crm"))
        wait_for(lambda: results_store(server.home).hand_over_of(lead_id))
        ok = c.post(
            "/v1/feedback",
            json={"lead_id": lead_id, "verdict": "rejected", "reason": "no_budget", "note": "next fiscal year"},
            headers=server.headers("sales"),
        )
        unlisted = c.post(
            "/v1/feedback",
            json={"lead_id": lead_id, "verdict": "rejected", "reason": "too expensive"},
            headers=server.headers("sales"),
        )
        bare = c.post("/v1/feedback", json={"lead_id": lead_id, "verdict": "rejected"}, headers=server.headers("sales"))
        by_crm = c.post("/v1/feedback", json={"lead_id": lead_id, "verdict": "accepted"}, headers=server.headers("crm"))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["verdict"], body["reason"], body["owner"], body["handed_over"]) == (
        "rejected",
        "no_budget",
        "sales@test.example",
        True,
    )
    assert unlisted.status_code == 422 and unlisted.json()["detail"][0]["loc"] == ["body", "reason"]
    assert bare.status_code == 422 and bare.json()["detail"][0]["loc"] == ["body", "reason"]
    assert by_crm.status_code == 403


def test_performance_counts_what_was_handed_over_and_what_it_became(server: Server, served_world: ServedWorld) -> None:
    """Two leads handed over in a week of June 2025 (nobody else scores then); one won within the horizon."""
    week = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday
    ids = [f"perf-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with server.client() as c:
        answers = [
            c.post("/v1/score", json=hot_lead(ids[0], week), headers=server.headers("crm")).json(),
            c.post(
                "/v1/score",
                json=hot_lead(ids[1], week + timedelta(days=1), source="event"),
                headers=server.headers("crm"),
            ).json(),
            c.post("/v1/score", json=hot_lead(ids[2], week, touches=1), headers=server.headers("crm")).json(),
        ]
        assert [a["qualified"] for a in answers] == [True, True, False]
        wait_for(lambda: all(results_store(server.home).hand_over_of(i) for i in ids[:2]))
        c.post(
            "/v1/outcomes",
            json={
                "outcomes": [
                    {"lead_id": ids[0], "outcome": "won", "closed_at": "2025-06-20T00:00:00Z"},
                    {"lead_id": ids[1], "outcome": "lost", "closed_at": "2025-06-21T00:00:00Z"},
                    {"lead_id": ids[2], "outcome": "won", "closed_at": "2025-06-05T00:00:00Z"},
                ]
            },
            headers=server.headers("crm"),
        )
        c.post(
            "/v1/feedback",
            json={"lead_id": ids[1], "verdict": "rejected", "reason": "not_a_fit"},
            headers=server.headers("sales"),
        )
        c.post("/v1/feedback", json={"lead_id": ids[0], "verdict": "accepted"}, headers=server.headers("sales"))
        period = {"from": "2025-06-02T00:00:00Z", "to": "2025-06-09T00:00:00Z", "as_of": "2025-12-31T00:00:00Z"}
        weekly = c.get("/v1/performance", params=period, headers=server.headers("marketing"))
        by_source = c.get("/v1/performance", params={**period, "by": "lead_source"}, headers=server.headers("sales"))
        early = c.get(
            "/v1/performance", params={**period, "as_of": "2025-06-30T00:00:00Z"}, headers=server.headers("crm")
        )
        backwards = c.get(
            "/v1/performance",
            params={"from": "2025-06-09T00:00:00Z", "to": "2025-06-02T00:00:00Z"},
            headers=server.headers("crm"),
        )
        unknown_by = c.get("/v1/performance", params={"by": "owner"}, headers=server.headers("crm"))
        too_early = c.get("/v1/performance", params={"to": "0001-01-01T00:00:00Z"}, headers=server.headers("crm"))
    assert weekly.status_code == 200, weekly.text
    report = weekly.json()
    assert report["horizon_days"] == 90  # the served model's (tests train with the default)
    (cohort,) = report["cohorts"]
    assert cohort["cohort"] == "2025-06-02" and cohort["status"] == "mature"
    assert (cohort["handed_over"], cohort["mature"], cohort["won_within_horizon"]) == (2, 2, 1)
    assert (cohort["accepted"], cohort["rejected"], cohort["rejected_by_reason"]) == (1, 1, {"not_a_fit": 1})
    assert cohort["realised_precision"] == 0.5
    assert cohort["expected_precision"] == pytest.approx((answers[0]["probability"] + answers[1]["probability"]) / 2)
    assert cohort["median_days_to_hand_over"] == pytest.approx(32.5)  # created 1 May: 32 and 33 days
    # the win of 20 June closed after the period; the one of 5 June was scored, never qualified: missed
    assert (cohort["wins_caught"], cohort["wins_missed"], report["wins_not_scored"]) == (0, 1, 0)
    by = {c["cohort"]: c["handed_over"] for c in by_source.json()["cohorts"]}
    assert by == {"event": 1, "referral": 1}
    maturing = early.json()["cohorts"][0]
    assert (maturing["status"], maturing["maturing"], maturing["wins_so_far"]) == ("maturing", 2, 1)
    assert maturing["expected_wins"] == pytest.approx(answers[0]["probability"] + answers[1]["probability"])
    assert backwards.status_code == 422 and unknown_by.status_code == 422
    assert too_early.status_code == 422 and too_early.json()["detail"][0]["loc"] == ["query", "to"]


async def _call(app: FastAPI, calls: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadscore") as client:
            return await calls(app, client)


def test_the_score_log_can_be_switched_off(served_world: ServedWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    key = KeyStore(make_engine(f"sqlite:///{served_world.home / 'leadscore.db'}")).create("crm", owner="c@x.example")[0]
    lead_id = f"off-{uuid.uuid4().hex[:8]}"

    async def calls(app: FastAPI, client: httpx.AsyncClient) -> int:
        r = await client.post(
            "/v1/score", json=hot_lead(lead_id, MAY + timedelta(days=30)), headers={"Authorization": f"Bearer {key}"}
        )
        return r.status_code

    app = create_app(get_settings(home=served_world.home, score_log=False))
    assert asyncio.run(_call(app, calls)) == 200
    assert results_store(served_world.home).scores(lead_id).empty


def test_a_hand_over_reaches_the_webhook_despite_failures(
    served_world: ServedWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    receiver = Receiver(fail_first=2)
    key = KeyStore(make_engine(f"sqlite:///{served_world.home / 'leadscore.db'}")).create("crm", owner="c@x.example")[0]
    lead_id = f"hook-{uuid.uuid4().hex[:8]}"

    async def calls(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        r = await client.post(
            "/v1/score", json=hot_lead(lead_id, MAY + timedelta(days=30)), headers={"Authorization": f"Bearer {key}"}
        )
        deadline = time.monotonic() + 20
        metrics = ""
        while time.monotonic() < deadline:  # delivered: the receiver took it and the sender has counted it
            metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})).text
            if 'leadscore_webhook_deliveries_total{result="delivered"}' in metrics:
                break
            await asyncio.sleep(0.1)
        return r.json(), metrics

    settings = get_settings(
        home=served_world.home, webhook_url=receiver.url, webhook_secret=SECRET, score_log_flush_seconds=0.1
    )
    app = create_app(settings)
    try:
        answer, metrics = asyncio.run(_call(app, calls))
    finally:
        receiver.server.shutdown()
    assert answer["qualified"]
    assert receiver.accepted.count(lead_id) == 1 and receiver.tries[lead_id] == 3
    assert 'leadscore_webhook_deliveries_total{result="failed"} 2.0' in metrics
    assert 'leadscore_webhook_deliveries_total{result="delivered"} 1.0' in metrics
    with pytest.raises(ValueError, match="LEADSCORE_WEBHOOK_SECRET"):
        create_app(get_settings(home=served_world.home, webhook_url=receiver.url))
    with pytest.raises(ValueError, match="LEADSCORE_SCORE_LOG"):
        create_app(get_settings(home=served_world.home, webhook_url=receiver.url, webhook_secret="x", score_log=False))


def test_a_store_locked_beyond_its_busy_timeout_is_a_503_to_retry_not_a_500(server: Server) -> None:
    """Another writer holds SQLite's write lock longer than the store's 5 s busy timeout: a verdict is refused
    with 503 and Retry-After (nothing changed), and accepted once the lock is gone."""
    import sqlite3

    lead_id = f"lock-{uuid.uuid4().hex[:8]}"
    body = {"lead_id": lead_id, "verdict": "accepted"}
    holder = sqlite3.connect(server.home / "leadscore.db", timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held through the call
        with server.client() as c:
            refused = c.post("/v1/feedback", json=body, headers=server.headers("sales"))
    finally:
        holder.rollback()
        holder.close()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "retry" in refused.json()["detail"]
    with server.client() as c:
        assert c.post("/v1/feedback", json=body, headers=server.headers("sales")).status_code == 200
