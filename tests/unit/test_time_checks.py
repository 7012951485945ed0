"""Out-of-range times in a scoring body: every one listed, in body order, whichever kind of field they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from features import FeatureSpec, LeadRecord, TouchRecord
from features.build import columns_of_records, datetimes_to_ns
from serving.errors import InvalidLeadData
from serving.scoring import check_times

NOW = datetime(2026, 5, 1, tzinfo=UTC)
OLD = datetime(1960, 1, 1, tzinfo=UTC)  # before 1970
FINE = datetime(2026, 4, 1, tzinfo=UTC)


def problems(leads: list[LeadRecord]) -> list[list[str | int]]:
    columns = columns_of_records(leads, FeatureSpec())
    as_of_ns = datetimes_to_ns([NOW] * len(leads))
    latest = int(datetimes_to_ns([NOW + timedelta(days=1)])[0])
    with pytest.raises(InvalidLeadData) as caught:
        check_times(columns, as_of_ns, latest, timedelta(days=1), batch=True)
    error = caught.value
    assert error.field is not None
    return [error.field, *(loc for loc, _ in error.more)]


def test_the_first_fifty_in_body_order_are_listed_whatever_kind_comes_first() -> None:
    # 60 leads created before 1970; lead 0 also has a touch before 1970, which comes second in the body
    leads = [LeadRecord(f"l{i}", OLD, touchpoints=[TouchRecord(OLD if i == 0 else FINE, "call")]) for i in range(60)]
    listed = problems(leads)
    assert listed[:3] == [
        ["body", "leads", 0, "created_at"],
        ["body", "leads", 0, "touchpoints", 0, "occurred_at"],
        ["body", "leads", 1, "created_at"],
    ]
    assert listed[3:50] == [["body", "leads", i, "created_at"] for i in range(2, 49)]
    assert len(listed) == 51 and listed[50] == ["body"]  # then: there are more


def test_touches_are_listed_by_lead_then_position() -> None:
    touches = [TouchRecord(t, "call") for t in (FINE, OLD, FINE, OLD)]
    leads = [LeadRecord("a", FINE, touchpoints=touches), LeadRecord("b", OLD, touchpoints=touches[:2])]
    assert problems(leads) == [
        ["body", "leads", 0, "touchpoints", 1, "occurred_at"],
        ["body", "leads", 0, "touchpoints", 3, "occurred_at"],
        ["body", "leads", 1, "created_at"],
        ["body", "leads", 1, "touchpoints", 1, "occurred_at"],
    ]
