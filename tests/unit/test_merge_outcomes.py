"""Outcomes received through the API merged over an export's (``leadscore retrain``), on hand-made tables."""

from __future__ import annotations

import pandas as pd

from training.data import CRMData, ValidationReport, merge_outcomes

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731


def export() -> CRMData:
    leads = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "created_at": [T("2026-01-01")] * 4})
    outcomes = pd.DataFrame(
        {"lead_id": ["a", "b"], "outcome": ["lost", "won"], "closed_at": [T("2026-02-01"), T("2026-02-03")]}
    )
    return CRMData(
        leads=leads, touchpoints=None, outcomes=outcomes, report=ValidationReport(), data_end=T("2026-03-01")
    )


def test_a_received_outcome_replaces_the_export_one_and_the_rest_is_counted() -> None:
    received = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "zz", "d", "d2"],
            "outcome": ["won", "won", "won", "won", "lost", "won"],
            "closed_at": [
                T("2026-02-20"),  # a: lost in the export, won since: replaces it
                T("2026-02-03"),  # b: the same as the export's
                T("2026-02-10"),  # c: new
                T("2026-02-10"),  # zz: not in the export
                T("2026-04-01"),  # d: after the end of the data
                T("2026-02-10"),  # d2: not in the export either
            ],
            "amount": [100.0, None, None, None, None, None],
        }
    )
    merged, lines = merge_outcomes(export(), received)
    got = merged.outcomes.set_index("lead_id").sort_index()
    assert got["outcome"].to_dict() == {"a": "won", "b": "won", "c": "won"}
    assert got.loc["a", "closed_at"] == T("2026-02-20")
    assert lines[0] == ("outcomes received through the API: 6; 1 added, 1 replace the export's, 1 equal the export's")
    assert "2 for leads not in the export" in lines[1]
    assert "1 closed after the end of the data (2026-03-01T00:00:00+00:00)" in lines[2]


def test_an_outcome_before_the_lead_existed_is_left_out() -> None:
    received = pd.DataFrame({"lead_id": ["c"], "outcome": ["won"], "closed_at": [T("2025-12-01")], "amount": [None]})
    merged, lines = merge_outcomes(export(), received)
    assert set(merged.outcomes["lead_id"]) == {"a", "b"}
    assert "1 closed before the lead was created" in lines[1]


def test_nothing_received_changes_nothing() -> None:
    data = export()
    merged, lines = merge_outcomes(data, pd.DataFrame(columns=["lead_id", "outcome", "closed_at", "amount"]))
    assert merged is data and lines == ["outcomes received through the API: none"]


def test_an_export_that_knows_of_a_later_close_keeps_its_own() -> None:
    received = pd.DataFrame({"lead_id": ["b"], "outcome": ["lost"], "closed_at": [T("2026-01-25")], "amount": [None]})
    merged, lines = merge_outcomes(export(), received)  # b: won on 3 February in the export
    assert merged.outcomes.set_index("lead_id").loc["b", "outcome"] == "won"
    assert "1 closed before the export's own outcome" in lines[1]
