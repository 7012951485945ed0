"""No input can produce a 500: property-based fuzzing of our own OpenAPI schema against a real server.

Each operation is fuzzed with the key of a role that may call it, so the generated bodies and parameters get
past authentication and the role check and reach the code that reads them; every operation must be seen to
succeed at least once. The server is the fuzz run's own (its own key and threshold store, the session's
trained model): the run proposes, approves and rejects thresholds, which must not change the cut-offs the
other API tests score with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.api.conftest import ServedWorld, Server, start_server, stop_server

APPROVE = "/v1/threshold/proposals/{policy_id}/approve"
REJECT = "/v1/threshold/proposals/{policy_id}/reject"

# (method, path) -> the role whose key the fuzz run sends (None: no key, the route needs none) and the status
# of a success. Scoring: crm (or admin); threshold proposals and decisions: marketing or sales, never admin;
# reads: any role (several are used); reload: admin.
OPERATIONS: dict[tuple[str, str], tuple[str | None, int]] = {
    ("POST", "/v1/score"): ("crm", 200),
    ("POST", "/v1/score/batch"): ("crm", 200),
    ("GET", "/v1/model"): ("sales", 200),
    ("POST", "/v1/admin/reload"): ("admin", 200),
    ("GET", "/healthz"): (None, 200),
    ("GET", "/readyz"): (None, 200),
    ("GET", "/metrics"): ("marketing", 200),
    ("GET", "/v1/me"): ("crm", 200),
    ("GET", "/v1/threshold"): ("sales", 200),
    ("GET", "/v1/threshold/analysis"): ("marketing", 200),
    ("GET", "/v1/threshold/curve"): ("crm", 200),
    ("GET", "/v1/threshold/history"): ("admin", 200),
    ("POST", "/v1/threshold/proposals"): ("marketing", 201),
    ("POST", APPROVE): ("sales", 200),
    ("POST", REJECT): ("sales", 200),
    ("POST", "/v1/outcomes"): ("crm", 200),
    ("POST", "/v1/feedback"): ("sales", 200),
    ("GET", "/v1/performance"): ("marketing", 200),
    ("GET", "/v1/monitoring"): ("crm", 200),
}
# Proposals made by marketing before the run, one pool per decision route: sales decides them.
POOL = 15

# The schema documents timestamps as plain strings, so the fuzzed leads almost never parse (422 at their
# timestamps) and never reach the model: half the scoring cases are well-formed leads instead, with any
# attributes and touches, some of them still refused on domain grounds (created after as_of, in the future).
# Likewise half the analysis cases ask exactly one question (the fuzzed ones mostly ask none or several).
ATTRIBUTES = ("lead_source", "industry", "company_size", "country", "job_level", "annual_revenue_musd", "not_known")
TOUCH_TYPES = ("web_visit", "email_open", "pricing_page", "demo_request", "call", "proposal", "carrier_pigeon")
moments = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1)).flatmap(
    lambda t: st.sampled_from([t, t.replace(tzinfo=UTC), t.replace(tzinfo=timezone(timedelta(hours=-5, minutes=-30)))])
)
stamps = moments.map(lambda t: t.isoformat())
finite = st.floats(allow_nan=False, allow_infinity=False)
attribute_values = st.none() | st.booleans() | st.integers() | finite | st.text()
touches = st.fixed_dictionaries(
    {"occurred_at": stamps, "touch_type": st.sampled_from(TOUCH_TYPES) | st.text(min_size=1, max_size=100)},
    optional={
        "channel": st.none() | st.sampled_from(("web", "email", "paid_social")) | st.text(max_size=100),
        "campaign": st.none() | st.text(max_size=200),
        "value": st.none() | finite,
    },
)
leads = st.fixed_dictionaries(
    {"lead_id": st.text(min_size=1, max_size=200), "created_at": stamps},
    optional={
        "attributes": st.dictionaries(
            st.sampled_from(ATTRIBUTES) | st.text(max_size=200), attribute_values, max_size=8
        ),
        "touchpoints": st.lists(touches, max_size=40),
        "as_of": st.none() | stamps,
    },
)
questions = st.one_of(
    st.floats(0.01, 0.99).map(lambda v: {"cutoff": v}),
    st.floats(1, 1e4).map(lambda v: {"leads_per_week": v}),
    st.floats(0.01, 1).map(lambda v: {"min_precision": v}),
    st.floats(0.01, 1).map(lambda v: {"min_recall": v}),
)
# path -> (the part of the request fixed, its strategy)
WELL_FORMED: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "/v1/score": ("body", leads),
    "/v1/score/batch": (
        "body",
        st.fixed_dictionaries({"leads": st.lists(leads, min_size=1, max_size=5)}, optional={"explain": st.booleans()}),
    ),
    "/v1/threshold/analysis": ("query", questions),
    "/v1/outcomes": (
        "body",
        st.fixed_dictionaries(
            {
                "outcomes": st.lists(
                    st.fixed_dictionaries(
                        {
                            "lead_id": st.text(min_size=1, max_size=200),
                            "outcome": st.sampled_from(("won", "lost")),
                            "closed_at": stamps,
                        },
                        optional={"amount": st.none() | finite},
                    ),
                    min_size=1,
                    max_size=20,
                )
            }
        ),
    ),
    "/v1/feedback": (
        "body",
        st.fixed_dictionaries(
            {
                "lead_id": st.text(min_size=1, max_size=200),
                "verdict": st.sampled_from(("accepted", "rejected", "recycled")),
            },
            optional={
                "reason": st.none() | st.sampled_from(("no_budget", "bad_timing", "other", "spam_or_test")),
                "note": st.none() | st.text(max_size=300),
            },
        ),
    ),
}


@dataclass
class FuzzWorld:
    server: Server
    pools: dict[str, list[int]]  # path -> ids of open marketing proposals


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory, served_world: ServedWorld) -> Iterator[FuzzWorld]:
    """A server with its own home (keys, threshold store, model cache) serving the session's champion."""
    home = tmp_path_factory.mktemp("fuzz")
    srv = start_server(
        home,
        {
            "LEADSCORE_TRACKING_URI": f"sqlite:///{served_world.home / 'mlflow.db'}",
            "LEADSCORE_MAX_BATCH_LEADS": "200",
            "LEADSCORE_MAX_BODY_BYTES": str(2 * 1024 * 1024),
        },
    )
    try:
        pools: dict[str, list[int]] = {}
        with srv.client() as c:
            for path in (APPROVE, REJECT):
                pools[path] = []
                for i in range(POOL):
                    r = c.post(
                        "/v1/threshold/proposals",
                        json={"cutoff": round(0.05 + 0.01 * i, 2), "reason": f"fuzz pool {i}"},
                        headers=srv.headers("marketing"),
                    )
                    assert r.status_code == 201, r.text
                    pools[path].append(r.json()["version"])
        yield FuzzWorld(srv, pools)
    finally:
        stop_server(srv)


def test_fuzzing_covers_every_operation(fuzz_world: FuzzWorld) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_world.server.url}/openapi.json")
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS))
def test_no_input_produces_a_server_error(fuzz_world: FuzzWorld, method: str, path: str) -> None:
    server = fuzz_world.server
    role, success = OPERATIONS[(method, path)]
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema[path][method]
    headers = server.headers(role) if role else {}
    strategy = operation.as_strategy()
    if path in WELL_FORMED:
        part, values = WELL_FORMED[path]
        strategy = st.one_of(strategy, values.flatmap(lambda value: operation.as_strategy(**{part: value})))
    if path in fuzz_world.pools:
        # Fuzzed ids are almost all unknown (404): half the cases take an open proposal's id instead, so that
        # the body reaches the decision.
        existing = st.sampled_from(fuzz_world.pools[path]).flatmap(
            lambda pid: operation.as_strategy(path_parameters={"policy_id": pid})
        )
        strategy = st.one_of(strategy, existing)
    responses: list[Response] = []

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Case) -> None:
        response = case.call_and_validate(
            base_url=server.url,
            headers=headers,
            checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
        )
        responses.append(response)

    check()
    statuses = sorted({r.status_code for r in responses})
    assert statuses and max(statuses) < 500, statuses
    # The key is admitted: no case stopped at authentication or the role check before its input was read.
    assert not {401, 403} & set(statuses), f"{role} was refused on {method} {path}: {statuses}"
    # At least one case got through everything (parameters, body, domain checks) and did the thing.
    assert success in statuses, f"no fuzzed {method} {path} succeeded: {statuses}"
    if path in (APPROVE, REJECT):
        decided = [r.json() for r in responses if r.status_code == 200]
        expected = "active" if path == APPROVE else "rejected"
        assert all(p["status"] == expected for p in decided), decided
        assert all(p["decisions"][-1]["role"] == "sales" for p in decided), decided
