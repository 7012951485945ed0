"""Plain factory functions for small, explicit test data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from features import LeadRecord, TouchRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_lead(**overrides: Any) -> dict[str, Any]:
    lead: dict[str, Any] = {
        "lead_id": "L1",
        "created_at": T0,
        "lead_source": "referral",
        "industry": "software",
        "company_size": "51-200",
        "annual_revenue_musd": 12.5,
    }
    lead.update(overrides)
    return lead


def make_touch(**overrides: Any) -> dict[str, Any]:
    touch: dict[str, Any] = {
        "lead_id": "L1",
        "occurred_at": T0 + timedelta(days=1),
        "touch_type": "web_visit",
        "channel": "web",
        "campaign": None,
        "value": None,
    }
    touch.update(overrides)
    return touch


def make_outcome(**overrides: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = {"lead_id": "L1", "outcome": "won", "closed_at": T0 + timedelta(days=30)}
    outcome.update(overrides)
    return outcome


def frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def records_from_frames(leads: pd.DataFrame, touchpoints: pd.DataFrame) -> list[LeadRecord]:
    """The serving-side records of leads and their touches, as a CRM would send them."""
    by_lead = {k: g for k, g in touchpoints.groupby("lead_id")}
    records = []
    for row in leads.itertuples(index=False):
        touches = by_lead.get(row.lead_id, touchpoints.iloc[:0])
        records.append(
            LeadRecord(
                row.lead_id,
                row.created_at.to_pydatetime(),
                {c: getattr(row, c) for c in leads.columns if c not in ("lead_id", "created_at")},
                [TouchRecord(t.occurred_at.to_pydatetime(), t.touch_type, t.channel) for t in touches.itertuples()],
            )
        )
    return records
