"""No input can produce a 500: property-based fuzzing of our own OpenAPI schema against a real server."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.api.conftest import Server

OPERATIONS = [
    ("POST", "/v1/score"),
    ("POST", "/v1/score/batch"),
    ("GET", "/v1/model"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/me"),
    ("GET", "/v1/threshold"),
    ("GET", "/v1/threshold/analysis"),
    ("GET", "/v1/threshold/curve"),
    ("GET", "/v1/threshold/history"),
    ("POST", "/v1/threshold/proposals"),
    ("POST", "/v1/threshold/proposals/{policy_id}/approve"),
    ("POST", "/v1/threshold/proposals/{policy_id}/reject"),
]


def test_fuzzing_covers_every_operation(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_input_produces_a_server_error(server: Server, method: str, path: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema[path][method]
    headers = server.headers("admin")
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call_and_validate(
            base_url=server.url,
            headers=headers,
            checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
        )
        statuses.append(response.status_code)

    check()
    assert statuses and max(statuses) < 500
