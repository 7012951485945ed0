"""The scoring API through a real uvicorn process: scores, batch, keys, roles and every bad-input answer."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.registry import configure_tracking, set_alias
from tests.api.conftest import ServedWorld, Server, start_server, stop_server
from tests.conftest import make_config
from training.data import load_crm_data
from training.pipeline import train
from training.score import score_chunks

AS_OF = "2026-05-01T00:00:00+00:00"


def lead_body(**overrides: object) -> dict:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    touches = [
        {"occurred_at": (start + timedelta(days=2 * i)).isoformat(), "touch_type": t, "channel": "web"}
        for i, t in enumerate(["web_visit", "email_open", "pricing_page", "webinar", "demo_request"] * 6)
    ]
    body = {
        "lead_id": "api-1",
        "created_at": start.isoformat(),
        "attributes": {
            "lead_source": "referral",
            "industry": "software",
            "company_size": "201-1000",
            "job_level": "vp",
        },
        "touchpoints": touches,
        "as_of": AS_OF,
    }
    body.update(overrides)
    return body


def test_score_answers_every_field(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/score", json=lead_body(), headers=server.headers("crm"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "lead_id",
        "probability",
        "score",
        "grade",
        "qualified",
        "fit",
        "engagement",
        "trend",
        "reasons",
        "model_version",
        "threshold_version",
    }
    assert 0 < body["probability"] < 1 and 0 <= body["score"] <= 100 and body["grade"] in "ABCD"
    assert body["trend"] in ("rising", "steady", "falling")
    assert body["reasons"] and all(set(r) == {"feature", "description", "impact"} for r in body["reasons"])
    assert all(r["description"] and "_" not in r["description"] for r in body["reasons"])
    positive = [r for r in body["reasons"] if r["impact"] > 0]
    assert positive == sorted(positive, key=lambda r: -r["impact"])


def test_without_reasons_the_score_is_the_same(server: Server) -> None:
    with server.client() as c:
        full = c.post("/v1/score", json=lead_body(), headers=server.headers("crm")).json()
        bare = c.post("/v1/score?explain=false", json=lead_body(), headers=server.headers("crm")).json()
    assert bare["probability"] == full["probability"] and bare["reasons"] == [] and bare["fit"] is None


def test_batch_answers_in_order(server: Server) -> None:
    leads = [lead_body(lead_id=f"b{i}", touchpoints=lead_body()["touchpoints"][: i * 3]) for i in range(8)]
    with server.client() as c:
        r = c.post("/v1/score/batch", json={"leads": leads, "explain": False}, headers=server.headers("admin"))
        singles = [c.post("/v1/score", json=lead, headers=server.headers("crm")).json() for lead in leads]
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["lead_id"] for x in results] == [f"b{i}" for i in range(8)]
    assert [x["probability"] for x in results] == [s["probability"] for s in singles]


def test_served_probability_equals_leadscore_score(server: Server, served_world: ServedWorld) -> None:
    data = load_crm_data(served_world.data_dir)
    as_of = pd.Timestamp(AS_OF)
    open_ids = set(data.leads.lead_id) - set(data.outcomes.loc[data.outcomes.closed_at <= as_of, "lead_id"])
    leads = data.leads[data.leads.lead_id.isin(open_ids) & (data.leads.created_at <= as_of)].iloc[:40]
    batch = next(
        score_chunks(
            served_world.result.model,
            leads,
            data.touchpoints,
            as_of,
            served_world.result.model.default_cutoffs,
            reasons=False,
        )
    )
    bodies = []
    for row in leads.itertuples(index=False):
        touches = data.touchpoints[data.touchpoints.lead_id == row.lead_id]
        attrs = {c: getattr(row, c) for c in leads.columns if c not in ("lead_id", "created_at")}
        attrs = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in attrs.items()}
        bodies.append(
            {
                "lead_id": row.lead_id,
                "created_at": row.created_at.isoformat(),
                "attributes": attrs,
                "as_of": AS_OF,
                "touchpoints": [
                    {"occurred_at": t.occurred_at.isoformat(), "touch_type": t.touch_type, "channel": t.channel}
                    for t in touches.itertuples()
                ],
            }
        )
    with server.client() as c:
        served = c.post(
            "/v1/score/batch", json={"leads": bodies, "explain": False}, headers=server.headers("crm")
        ).json()
    np.testing.assert_allclose([x["probability"] for x in served["results"]], batch["probability"], rtol=1e-12)
    assert [x["qualified"] for x in served["results"]] == batch["qualified"].tolist()


def test_model_info(server: Server, served_world: ServedWorld) -> None:
    with server.client() as c:
        r = c.get("/v1/model", headers=server.headers("marketing"))
    body = r.json()
    assert body["version"] == served_world.result.model_version
    assert body["metrics"]["test_roc_auc"] == pytest.approx(served_world.result.metrics["test_roc_auc"])
    assert body["data_fingerprint"]["sha256"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer lsk_not-a-key"}, 401), ({"Authorization": "Basic abc"}, 401)],
)
def test_missing_or_unknown_key_is_401(server: Server, headers: dict, status: int) -> None:
    with server.client() as c:
        for method, path in (
            ("POST", "/v1/score"),
            ("GET", "/v1/model"),
            ("GET", "/metrics"),
            ("POST", "/v1/admin/reload"),
        ):
            r = c.request(method, path, json=lead_body(), headers=headers)
            assert r.status_code == status, (path, r.text)


def test_health_needs_no_key(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["ready"] is True


@pytest.mark.parametrize("role", ["marketing", "sales"])
def test_wrong_role_is_403(server: Server, role: str) -> None:
    with server.client() as c:
        assert c.post("/v1/score", json=lead_body(), headers=server.headers(role)).status_code == 403
        assert c.post("/v1/admin/reload", headers=server.headers("crm")).status_code == 403


def _422(server: Server, body: dict | str) -> list[dict]:
    with server.client() as c:
        content = body if isinstance(body, str) else json.dumps(body)
        r = c.post("/v1/score", content=content, headers={**server.headers("crm"), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    return r.json()["detail"]


def test_422_names_the_offending_field(server: Server) -> None:
    touches = lead_body()["touchpoints"]
    cases = {
        "wrong type": (
            lead_body(touchpoints=[{**touches[0], "touch_type": 5}]),
            ["body", "touchpoints", 0, "touch_type"],
        ),
        "unparseable time": (lead_body(created_at="last tuesday"), ["body", "created_at"]),
        "before 1970": (
            lead_body(touchpoints=[{**touches[0], "occurred_at": "1960-01-01T00:00:00Z"}]),
            ["body", "touchpoints", 0, "occurred_at"],
        ),
        "years in the future": (
            lead_body(touchpoints=[touches[0], {**touches[1], "occurred_at": "2091-01-01T00:00:00Z"}]),
            ["body", "touchpoints", 1, "occurred_at"],
        ),
        "year 9999": (
            lead_body(touchpoints=[touches[0], {**touches[1], "occurred_at": "9999-12-31T23:59:59Z"}]),
            ["body", "touchpoints", 1, "occurred_at"],
        ),
        "year 1": (lead_body(created_at="0001-01-01T00:00:00Z"), ["body", "created_at"]),
        "attribute not a scalar": (
            lead_body(attributes={"industry": {"nested": 1}}),
            ["body", "attributes", "industry"],
        ),
        "attribute name too long": (
            lead_body(attributes={"x" * 201: 1, "industry": "software"}),
            ["body", "attributes", "x" * 201],
        ),
        "missing field": ({k: v for k, v in lead_body().items() if k != "created_at"}, ["body", "created_at"]),
        "unknown field": (lead_body(score_me="please"), ["body", "score_me"]),
        "touch missing its type": (
            lead_body(touchpoints=[touches[0], {"occurred_at": AS_OF}]),
            ["body", "touchpoints", 1, "touch_type"],
        ),
        "empty lead id": (lead_body(lead_id=""), ["body", "lead_id"]),
    }
    for name, (body, loc) in cases.items():
        detail = _422(server, body)
        assert any(d["loc"][: len(loc)] == loc for d in detail), (name, detail)


def test_422_lists_every_offending_field_in_body_order(server: Server) -> None:
    body = lead_body(created_at="last tuesday", score_me="please")
    body["attributes"]["industry"] = {"nested": 1}
    body["touchpoints"][2]["touch_type"] = 5
    body["touchpoints"][7] = {"occurred_at": "not a time", "touch_type": "call", "colour": "red"}
    del body["lead_id"]
    text = json.dumps(body).replace('"channel": "web"}]', '"channel": "web", "value": NaN}]', 1)
    detail = _422(server, text)
    assert [d["loc"] for d in detail] == [
        ["body", "created_at"],
        ["body", "attributes", "industry"],
        ["body", "touchpoints", 2, "touch_type"],
        ["body", "touchpoints", 7, "occurred_at"],
        ["body", "touchpoints", 7, "colour"],
        ["body", "touchpoints", 29, "value"],
        ["body", "score_me"],
        ["body", "lead_id"],
    ], detail
    assert all(d["msg"] and d["type"] == "InvalidLeadData" for d in detail)


def test_422_lists_every_time_out_of_range(server: Server) -> None:
    touches = lead_body()["touchpoints"]
    for i in (0, 3):
        touches[i] = {**touches[i], "occurred_at": "1960-01-01T00:00:00Z"}
    touches[5] = {**touches[5], "occurred_at": "2091-01-01T00:00:00Z"}
    detail = _422(server, lead_body(touchpoints=touches, created_at="1969-01-01T00:00:00Z"))
    assert [(d["loc"], d["msg"]) for d in detail] == [
        (["body", "created_at"], "timestamp before 1970"),
        (["body", "touchpoints", 0, "occurred_at"], "timestamp before 1970"),
        (["body", "touchpoints", 3, "occurred_at"], "timestamp before 1970"),
        (["body", "touchpoints", 5, "occurred_at"], "timestamp more than 1 day(s) in the future"),
    ]


def test_a_lead_created_after_its_as_of_is_a_422_naming_created_at(server: Server) -> None:
    detail = _422(server, lead_body(created_at="2026-05-02T00:00:00Z", touchpoints=[]))
    assert [(d["loc"], d["msg"]) for d in detail] == [
        (["body", "created_at"], "created after as_of: the lead did not exist yet")
    ]


def test_the_trend_of_a_lead_younger_than_a_week_says_new(server: Server) -> None:
    """Its score a week ago would be that of a lead that did not exist yet."""
    with server.client() as c:
        young = c.post(
            "/v1/score",
            json=lead_body(created_at="2026-04-27T00:00:00Z", touchpoints=[]),
            headers=server.headers("crm"),
        )
        week_old = c.post(
            "/v1/score",
            json=lead_body(created_at="2026-04-23T00:00:00Z", touchpoints=[]),
            headers=server.headers("crm"),
        )
    assert young.status_code == 200 and young.json()["trend"] == "new"
    assert week_old.status_code == 200 and week_old.json()["trend"] in ("rising", "steady", "falling")


def test_batch_422_lists_the_fields_of_every_lead_and_says_when_it_stops(server: Server) -> None:
    leads = [lead_body(lead_id="ok"), lead_body(lead_id=""), lead_body(), lead_body(created_at=7)]
    with server.client() as c:
        r = c.post("/v1/score/batch", json={"leads": leads}, headers=server.headers("crm"))
        assert r.status_code == 422, r.text
        assert [d["loc"] for d in r.json()["detail"]] == [
            ["body", "leads", 1, "lead_id"],
            ["body", "leads", 3, "created_at"],
        ]
        many = lead_body(touchpoints=[{**t, "touch_type": 1} for t in lead_body()["touchpoints"] * 3])  # 90 bad
        detail = _422(server, many)
        assert [d["loc"] for d in detail[:50]] == [["body", "touchpoints", i, "touch_type"] for i in range(50)]
        assert len(detail) == 51 and detail[50]["loc"] == ["body"] and "50 are listed" in detail[50]["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000])
def test_nan_and_infinity_are_422(server: Server, literal: str) -> None:
    text = json.dumps(lead_body()).replace(
        '"touchpoints": [', f'"touchpoints": [{{"occurred_at": "{AS_OF}", "touch_type": "x", "value": {literal}}}, ', 1
    )
    detail = _422(server, text)
    assert any(d["loc"][:4] == ["body", "touchpoints", 0, "value"] for d in detail)
    text = json.dumps(lead_body(attributes={"annual_revenue_musd": 1.0})).replace("1.0", literal)
    assert any(d["loc"][:2] == ["body", "attributes"] for d in _422(server, text))


def test_malformed_json_is_422_at_the_body(server: Server) -> None:
    for text in ('{"lead_id": "a",', "", "[1, 2]", '{"lead_id": "a", "created_at": "2026-01-01T00:00:00Z"} trailing'):
        detail = _422(server, text)
        assert detail[0]["loc"] == ["body"] and detail[0]["msg"], (text, detail)


def test_batch_error_names_the_lead(server: Server) -> None:
    touches = lead_body()["touchpoints"]
    cases = [
        (
            [lead_body(lead_id="ok"), lead_body(lead_id="bad", as_of="2150-01-01T00:00:00Z")],
            ["body", "leads", 1, "as_of"],
        ),
        (
            [lead_body(), lead_body(), lead_body(touchpoints=[touches[0], {**touches[1], "touch_type": 7}])],
            ["body", "leads", 2, "touchpoints", 1, "touch_type"],
        ),
        (
            [lead_body(), lead_body(touchpoints=[touches[0], {**touches[1], "occurred_at": "1969-12-31T23:59:59Z"}])],
            ["body", "leads", 1, "touchpoints", 1, "occurred_at"],
        ),
        ([lead_body(), lead_body(attributes={"revenue": float("inf")})], ["body", "leads", 1, "attributes", "revenue"]),
    ]
    with server.client() as c:
        for leads, loc in cases:
            content = json.dumps({"leads": leads})  # json.dumps writes inf as Infinity
            r = c.post(
                "/v1/score/batch",
                content=content,
                headers={**server.headers("crm"), "Content-Type": "application/json"},
            )
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (loc, r.text)


def test_concurrent_requests_get_the_answers_they_get_one_by_one(server: Server) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    bodies = [
        lead_body(lead_id=f"conc-{i}", touchpoints=lead_body()["touchpoints"][: 3 * i], created_at=start.isoformat())
        for i in range(10)
    ]
    bodies[4] = lead_body(lead_id="conc-bad", created_at="1960-01-01T00:00:00Z")
    crm = server.headers("crm")

    def post(body: dict) -> tuple[int, dict]:
        with server.client() as c:
            r = c.post("/v1/score?explain=false", json=body, headers=crm)
            return r.status_code, r.json()

    alone = [post(b) for b in bodies]
    with ThreadPoolExecutor(max_workers=10) as pool:
        for _ in range(3):
            assert list(pool.map(post, bodies)) == alone
    assert alone[4][0] == 422 and alone[4][1]["detail"][0]["loc"] == ["body", "created_at"]
    assert [s for s, _ in alone].count(200) == 9 and len({a["probability"] for s, a in alone if s == 200}) > 1


def test_explain_is_a_boolean_query_flag(server: Server) -> None:
    with server.client() as c:
        bad = c.post("/v1/score?explain=perhaps", json=lead_body(), headers=server.headers("crm"))
        crm = server.headers("crm")
        off = [c.post(f"/v1/score?explain={v}", json=lead_body(), headers=crm) for v in ("false", "0")]
        on = c.post("/v1/score?explain=yes", json=lead_body(), headers=server.headers("crm"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "explain"], bad.text
    assert all(r.status_code == 200 and r.json()["reasons"] == [] and r.json()["fit"] is None for r in off)
    assert on.status_code == 200 and on.json()["reasons"] and on.json()["fit"] is not None


def test_the_key_is_checked_before_the_body(server: Server) -> None:
    with server.client() as c:
        assert c.post("/v1/score", content="not json", headers={"Authorization": "Bearer lsk_x"}).status_code == 401
        assert c.post("/v1/score", content="not json", headers=server.headers("marketing")).status_code == 403


def test_openapi_documents_the_scoring_bodies(server: Server) -> None:
    with server.client() as c:
        spec = c.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, body, answer in (("/v1/score", "LeadIn", "ScoreOut"), ("/v1/score/batch", "BatchIn", "BatchOut")):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{body}")
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{answer}")
        assert operation["security"] == [{"HTTPBearer": []}]
    assert {"lead_id", "created_at", "attributes", "touchpoints", "as_of"} == set(schemas["LeadIn"]["properties"])
    assert schemas["LeadIn"]["required"] == ["lead_id", "created_at"]
    assert {"probability", "score", "grade", "qualified", "fit", "engagement", "trend", "reasons"} <= set(
        schemas["ScoreOut"]["properties"]
    )


def test_touches_after_as_of_are_ignored_and_unknown_types_score(server: Server) -> None:
    base = lead_body()
    later = {"occurred_at": "2026-06-01T00:00:00Z", "touch_type": "proposal", "channel": "sales"}
    odd = {"occurred_at": "2026-04-01T00:00:00Z", "touch_type": "carrier pigeon", "channel": "sky"}
    with server.client() as c:
        a = c.post("/v1/score", json=base, headers=server.headers("crm")).json()
        b = c.post(
            "/v1/score", json={**base, "touchpoints": [*base["touchpoints"], later]}, headers=server.headers("crm")
        ).json()
        odd_r = c.post(
            "/v1/score",
            json={**base, "touchpoints": [*base["touchpoints"], odd], "attributes": {"industry": "alchemy"}},
            headers=server.headers("crm"),
        )
    assert a["probability"] == b["probability"]
    assert odd_r.status_code == 200


def test_413_for_large_body_and_large_batch(server: Server) -> None:
    with server.client() as c:
        big = {"leads": [lead_body(lead_id=str(i)) for i in range(201)]}
        assert c.post("/v1/score/batch", json=big, headers=server.headers("crm")).status_code == 413
        huge = json.dumps(lead_body(attributes={"note": "x" * (3 * 1024 * 1024)}))
        r = c.post("/v1/score", content=huge, headers={**server.headers("crm"), "Content-Type": "application/json"})
        assert r.status_code == 413
        streamed = (huge[i : i + 65536].encode() for i in range(0, len(huge), 65536))  # chunked: no length
        r = c.post("/v1/score", content=streamed, headers={**server.headers("crm"), "Content-Type": "application/json"})
        assert r.status_code == 413 and "larger than" in r.text
        small = (part.encode() for part in (json.dumps(lead_body())[:50], json.dumps(lead_body())[50:]))
        r = c.post("/v1/score", content=small, headers={**server.headers("crm"), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text


def test_a_large_upload_over_the_limit_gets_a_413_the_client_can_read(server: Server) -> None:
    """40 MB against a 2 MiB limit: the server reads and drops the rest before it answers, so the client
    gets the 413 and its message, not "connection reset by peer"; /metrics counts it as a 413."""
    huge = json.dumps(lead_body(attributes={"note": "x" * (40 * 1024 * 1024)}))
    headers = {**server.headers("crm"), "Content-Type": "application/json"}
    with server.client() as c:
        for _ in range(3):
            r = c.post("/v1/score", content=huge, headers=headers)
            assert r.status_code == 413 and "larger than" in r.json()["detail"]
        streamed = (huge[i : i + (1 << 20)].encode() for i in range(0, 8 << 20, 1 << 20))  # chunked, no length
        assert c.post("/v1/score", content=streamed, headers=headers).status_code == 413
        text = c.get("/metrics", headers=server.headers("crm")).text
    counted = re.findall(r'leadscore_requests_total\{method="POST",route="[^"]*",status="(\d+)"\} (\d+)', text)
    assert not [n for status, n in counted if status == "500"]
    assert sum(float(n) for status, n in counted if status == "413") >= 4


def test_metrics_are_exposed(server: Server) -> None:
    with server.client() as c:
        c.post("/v1/score", json=lead_body(), headers=server.headers("crm"))
        text = c.get("/metrics", headers=server.headers("crm")).text
    assert 'leadscore_requests_total{method="POST",route="/v1/score",status="200"}' in text
    assert "leadscore_request_latency_seconds_bucket" in text and "leadscore_leads_qualified_total" in text
    assert 'leadscore_model_version{name="leadscore"' in text
    assert "leadscore_score_gathered_requests_bucket" in text  # concurrent requests scored together


def test_metrics_add_up_every_worker(served_world: ServedWorld) -> None:
    srv = start_server(served_world.home, {"LEADSCORE_WORKERS": "2"})
    sent = 40

    def score(_: int) -> int:
        with srv.client() as c:  # a new connection each time, so both workers answer some
            return c.post("/v1/score", json=lead_body(), headers=srv.headers("crm")).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(score, range(sent))) == {200}
        pids = {path.stem.rsplit("_", 1)[-1] for path in (served_world.home / "prometheus").glob("*.db")}
        assert len(pids) >= 2, pids  # every worker writes its own values
        for _ in range(8):  # whichever worker answers the scrape, it reports the sum over workers
            with srv.client() as c:
                text = c.get("/metrics", headers=srv.headers("crm")).text
            scored = re.search(r"^leadscore_leads_scored_total (\S+)$", text, re.M)
            assert scored is not None and float(scored[1]) == sent, text[:2000]
    finally:
        stop_server(srv)


def test_no_model_is_503(tmp_path: Path) -> None:
    srv = start_server(tmp_path, wait_ready=False)
    try:
        with srv.client() as c:
            assert c.get("/readyz").status_code == 503
            assert c.post("/v1/score", json=lead_body(), headers=srv.headers("crm")).status_code == 503
            assert c.get("/healthz").status_code == 200
            # the key comes first on every route: without one, 401 even with no model to serve
            for method, path in (
                ("POST", "/v1/score"),
                ("POST", "/v1/score/batch"),
                ("GET", "/v1/model"),
                ("GET", "/v1/threshold"),
                ("GET", "/v1/threshold/curve"),
                ("POST", "/v1/threshold/proposals"),
            ):
                assert c.request(method, path, json={}).status_code == 401, path
            assert c.get("/v1/model", headers=srv.headers("crm")).status_code == 503
            # With no model nothing can be checked against the served version: a decision waits for one.
            from serving.store import Principal
            from serving.store import make_engine as engine_of
            from serving.thresholds import Grades, ThresholdStore

            store = ThresholdStore(engine_of(f"sqlite:///{tmp_path / 'leadscore.db'}"))
            made = store.propose(
                Principal(1, "m", "marketing", "m@example.com"), "leadscore", "17", 0.2, Grades(0.5, 0.3, 0.1), "x"
            )
            approve = c.post(f"/v1/threshold/proposals/{made.id}/approve", headers=srv.headers("sales"))
            assert approve.status_code == 503 and store.get(made.id).status == "proposed"
    finally:
        stop_server(srv)


def test_reload_under_load_has_zero_failures_and_refuses_a_broken_model(tmp_path: Path, demo_dir: Path) -> None:
    first = train(make_config(tmp_path, demo_dir, promote=True, tune=False))
    second = train(make_config(tmp_path, demo_dir, num_leaves=4, seed=7, tune=False))
    srv = start_server(tmp_path)
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with srv.client() as c:
            while not stop.is_set():
                r = c.post("/v1/score?explain=false", json=lead_body(), headers=srv.headers("crm"))
                statuses.append(r.status_code)
                versions.append(r.json().get("model_version", "?"))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        configure_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
        set_alias("leadscore", "champion", second.model_version)
        with srv.client() as c:
            reloaded = c.post("/v1/admin/reload", headers=srv.headers("admin")).json()
            assert reloaded == {"changed": True, "model_version": second.model_version, "error": None}
            # A version whose artifacts cannot load is refused; the old one keeps serving.
            broken = MlflowClient().create_model_version("leadscore", source=str(tmp_path / "nothing-here"))
            set_alias("leadscore", "champion", broken.version)
            refused = c.post("/v1/admin/reload", headers=srv.headers("admin")).json()
            assert refused["changed"] is False and refused["model_version"] == second.model_version
            assert "refused" in refused["error"]
            ready = c.get("/readyz").json()
            assert (
                ready["ready"] and ready["model_version"] == second.model_version and "refused" in ready["last_error"]
            )
            metrics = c.get("/metrics", headers=srv.headers("crm")).text
            assert "leadscore_model_reload_failures_total 1.0" in metrics
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_server(srv)
    assert statuses and set(statuses) == {200}
    assert versions[0] == first.model_version and versions[-1] == second.model_version


def test_revoked_key_stops_working(server: Server) -> None:
    from serving.store import KeyStore, make_engine

    store = KeyStore(make_engine(f"sqlite:///{server.home / 'leadscore.db'}"))
    key, info = store.create("crm", "soon-revoked", owner="crm@test.example")
    with server.client() as c:
        assert c.post("/v1/score", json=lead_body(), headers={"Authorization": f"Bearer {key}"}).status_code == 200
        store.revoke(str(info.key_id))
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if c.post("/v1/score", json=lead_body(), headers={"Authorization": f"Bearer {key}"}).status_code == 401:
                break
            time.sleep(0.5)
        else:
            pytest.fail("revoked key still accepted after 10 s")


def test_unreachable_registry_at_start_serves_the_local_copy_of_the_last_model(server: Server, tmp_path: Path) -> None:
    """The session server has loaded a model, so its home holds the local copy; now the registry is gone."""
    extra = {
        "LEADSCORE_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens on the discard port
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    }
    srv = start_server(server.home, extra)
    try:
        with srv.client() as c:
            ready = c.get("/readyz").json()
            assert ready["ready"] and ready["model_version"] == "1"
            assert "could not reach the model registry" in ready["last_error"]
            assert c.post("/v1/score", json=lead_body(), headers=srv.headers("crm")).status_code == 200
    finally:
        stop_server(srv)


def test_an_attribute_of_400_digits_is_answered_not_a_500(server: Server) -> None:
    """A number beyond float (an OverflowError in a float conversion) is a client's value, never a server error:
    in one lead, in a batch, in the API's fast lane and in the JSON it echoes."""
    huge = "9" * 400
    text = json.dumps(lead_body(attributes={"annual_revenue_musd": 1.5, "industry": "software"})).replace("1.5", huge)
    with server.client() as c:
        single = c.post(
            "/v1/score", content=text, headers={**server.headers("crm"), "content-type": "application/json"}
        )
        batch = c.post(
            "/v1/score/batch",
            content=f'{{"leads": [{text}, {text}]}}',
            headers={**server.headers("crm"), "content-type": "application/json"},
        )
    assert single.status_code == 200 and batch.status_code == 200, (single.text, batch.text)
    # Read as a missing number, as training reads a value it cannot take as a number.
    with server.client() as c:
        missing = c.post(
            "/v1/score", json=lead_body(attributes={"industry": "software"}), headers=server.headers("crm")
        )
        missing = missing.json()
    assert single.json()["probability"] == missing["probability"]
    assert [r["probability"] for r in batch.json()["results"]] == [missing["probability"]] * 2
