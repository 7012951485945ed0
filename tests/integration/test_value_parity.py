"""Training and serving give identical features for the same lead written as CSV and sent as JSON."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from starlette.requests import Request

from features import build_features, build_features_from_records, infer_spec
from serving.bodies import json_body
from serving.schemas import LeadIn
from training.data import load_crm_data

AS_OF = datetime(2025, 3, 10, tzinfo=UTC)

# L1 is the lead under test: a boolean written `true`, a 0/1 column, padded and capitalised text, a
# placeholder, and two calls on one date of a date-only export (equal rows, two touches). The other leads
# give the columns their kinds: `partner` holds booleans only (a category), `opted_in` 0/1 (numbers).
LEADS_CSV = """\
lead_id,created_at,partner,opted_in,industry,lead_source
L1,2025-03-01,true,1,"  Software ",Select
L2,2025-03-01,False,0,software,referral
L3,2025-03-02,TRUE,0,Finance,referral
L4,2025-03-02,false,1,finance,Select
"""
TOUCHPOINTS_CSV = """\
lead_id,occurred_at,touch_type,channel
L1,2025-03-05,call,phone
L1,2025-03-05,call,phone
L2,2025-03-05,web_visit,web
"""
OUTCOMES_CSV = """\
lead_id,outcome,closed_at
L2,lost,2025-03-20
"""


def lead_json(**attributes: object) -> bytes:
    """L1 as a CRM sends it to POST /v1/score."""
    call = {"occurred_at": "2025-03-05T00:00:00Z", "touch_type": "call", "channel": "phone"}
    body = {"lead_id": "L1", "created_at": "2025-03-01T00:00:00Z", "attributes": attributes, "touchpoints": [call] * 2}
    return json.dumps(body).encode()


def decode_as_the_route_does(raw: bytes) -> LeadIn:
    """The body of a request to /v1/score, decoded by the scoring route's own reader (msgspec)."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def decode() -> LeadIn:
        scope = {"type": "http", "method": "POST", "path": "/v1/score", "headers": [], "query_string": b""}
        return await json_body(LeadIn)(Request(scope, receive))

    return asyncio.run(decode())


@pytest.fixture(scope="module")
def trained_side(tmp_path_factory: pytest.TempPathFactory):
    """L1's feature row as training builds it: CSV files -> load_crm_data -> infer_spec -> build_features."""
    directory: Path = tmp_path_factory.mktemp("crm")
    (directory / "leads.csv").write_text(LEADS_CSV)
    (directory / "touchpoints.csv").write_text(TOUCHPOINTS_CSV)
    (directory / "outcomes.csv").write_text(OUTCOMES_CSV)
    data = load_crm_data(directory)
    spec = infer_spec(data.leads, data.touchpoints, min_category_count=1)
    features = build_features(data.leads[data.leads.lead_id == "L1"], data.touchpoints, AS_OF, spec)
    return data, spec, features


def test_the_csv_reads_as_written(trained_side) -> None:
    data, spec, _ = trained_side
    assert spec.categorical_attributes == {
        "partner": ("false", "true"),  # 2 each: `true`/`TRUE` and `False`/`false` are one value each
        "industry": ("finance", "software"),  # 2 each: "  Software " is software
        "lead_source": ("referral",),  # `Select` is no value
    }
    assert spec.numeric_attributes == ("opted_in",)
    assert len(data.touchpoints) == 3  # both calls of L1 kept, and said
    assert any("2 row(s) equal another row in every column" in note for note in data.report.notes)


@pytest.mark.parametrize(
    "attributes",
    [
        {"partner": True, "opted_in": True, "industry": "  Software ", "lead_source": "Select"},  # JSON types
        {"partner": "true", "opted_in": 1, "industry": "Software", "lead_source": None},  # the CSV's text
        {"partner": " TRUE ", "opted_in": "1", "industry": "SOFTWARE", "lead_source": "select"},
        {"partner": True, "opted_in": 1.0, "industry": "software"},  # a missing key is a missing value
    ],
    ids=["json-types", "csv-text", "shouting", "sparse"],
)
def test_training_and_serving_give_identical_features(trained_side, attributes: dict[str, object]) -> None:
    _, spec, trained = trained_side
    lead = decode_as_the_route_does(lead_json(**attributes))
    served = build_features_from_records([lead], AS_OF, spec)
    np.testing.assert_array_equal(served, trained.to_numpy())  # NaN where NaN, bit for bit elsewhere

    row = dict(zip(spec.feature_names, served[0].tolist(), strict=True))
    assert row["n_call_all"] == 2 and row["n_touches_all"] == 2  # two calls on one date count 2
    assert row["attr_partner"] == 1  # "true" is code 1 of ("false", "true")
    assert row["attr_opted_in"] == 1.0
    assert row["attr_industry"] == 1  # "software" is code 1 of ("finance", "software")
    assert math.isnan(row["attr_lead_source"])  # a placeholder is missing, not an unknown value
