"""Realised results on a hand-made data set whose every figure is worked out below."""

from __future__ import annotations

import pandas as pd
import pytest

from models.performance import performance
from models.threshold_analysis import wilson

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
HORIZON = 10  # days
AS_OF = T("2026-03-01")


def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # L1..L4 handed over; L5 scored, never handed over, won (missed); L6 won, never scored.
    hand_overs = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4"],
            "handed_over_at": [T("2026-01-05"), T("2026-01-06"), T("2026-01-07"), T("2026-02-25")],
            "created_at": [T("2026-01-01"), T("2026-01-04"), T("2026-01-07"), T("2026-02-20")],
            "probability": [0.6, 0.4, 0.5, 0.7],
            "model_version": ["1", "1", "2", "2"],
            "threshold_version": [3, 3, 3, 4],
            "lead_source": ["web", "web", "event", "web"],
            "campaign": ["c1", None, "c1", "c2"],
        }
    )
    scored = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5"],
            "first_as_of": [T("2026-01-01"), T("2026-01-04"), T("2026-01-07"), T("2026-02-20"), T("2026-01-02")],
            "created_at": [T("2026-01-01"), T("2026-01-04"), T("2026-01-07"), T("2026-02-20"), T("2026-01-02")],
            "probability": [0.3, 0.2, 0.1, 0.6, 0.8],
            "model_version": ["1", "1", "2", "2", "1"],
            "threshold_version": [3, 3, 3, 4, 3],
            "lead_source": ["web", "web", "event", "web", "ads"],
            "campaign": ["c1", None, "c1", "c2", None],
        }
    )
    outcomes = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L4", "L5", "L6", "L7"],
            "outcome": ["won", "won", "won", "won", "won", "lost"],
            "closed_at": [
                T("2026-01-10"),
                T("2026-01-30"),
                T("2026-02-27"),
                T("2026-01-20"),
                T("2026-01-15"),
                T("2026-01-09"),
            ],
        }
    )
    verdicts = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4"],
            "verdict": ["accepted", "rejected", "rejected", "recycled"],
            "reason": [None, "no_budget", "bad_timing", "bad_timing"],
        }
    )
    return hand_overs, scored, outcomes, verdicts


def report(by: str = "week", **overrides: object):  # type: ignore[no-untyped-def]
    args = {"horizon_days": HORIZON, "start": T("2026-01-01"), "end": T("2026-03-01"), "as_of": AS_OF, "by": by}
    args.update(overrides)
    return performance(*world(), **args)  # type: ignore[arg-type]


def test_weekly_cohorts_count_leads_handed_over_and_their_wins_within_the_horizon() -> None:
    r = report()
    cohorts = {c.cohort: c for c in r.cohorts}
    assert list(cohorts) == ["2026-01-05", "2026-01-19", "2026-01-26", "2026-02-23"]
    first = cohorts["2026-01-05"]  # L1 (won 5 days after), L2 (won 24 days after: outside 10), L3 (no outcome)
    assert (first.handed_over, first.mature, first.won_within_horizon, first.maturing) == (3, 3, 1, 0)
    assert first.realised_precision == pytest.approx(1 / 3)
    assert first.realised_precision_interval == pytest.approx(wilson(1, 3))
    assert first.expected_precision == pytest.approx((0.6 + 0.4 + 0.5) / 3)
    assert (first.accepted, first.rejected, first.recycled, first.no_verdict) == (1, 2, 0, 0)
    assert first.rejected_by_reason == {"bad_timing": 1, "no_budget": 1}
    assert first.median_days_to_hand_over == pytest.approx(2.0)  # 4, 2 and 0 days
    assert first.status == "mature"
    # wins are grouped by the week they closed: L1 in the first week, L2 in the week of 26 January
    assert (first.wins_caught, first.wins_missed) == (1, 0)
    assert (cohorts["2026-01-26"].wins_caught, cohorts["2026-01-26"].handed_over) == (1, 0)
    assert cohorts["2026-01-26"].status == "no hand-overs"
    assert (cohorts["2026-01-19"].wins_caught, cohorts["2026-01-19"].wins_missed) == (0, 1)  # L5


def test_a_cohort_inside_the_horizon_is_maturing_with_wins_so_far_and_expected_wins() -> None:
    last = {c.cohort: c for c in report().cohorts}["2026-02-23"]  # L4: handed over 4 days before as_of
    assert last.status == "maturing"
    assert (last.mature, last.maturing, last.wins_so_far) == (0, 1, 1)
    assert last.expected_wins == pytest.approx(0.7)
    assert last.realised_precision is None and last.realised_precision_interval is None
    assert last.recycled == 1 and last.rejected_by_reason == {}


def test_the_total_counts_every_lead_once_and_wins_of_unscored_leads_apart() -> None:
    r = report()
    t = r.total
    assert (t.handed_over, t.mature, t.won_within_horizon, t.maturing, t.wins_so_far) == (4, 3, 1, 1, 1)
    assert (t.wins_caught, t.wins_missed) == (3, 1)
    assert r.wins_not_scored == 1  # L6
    assert t.status == "partly mature"
    assert t.median_days_to_hand_over == pytest.approx(3.0)  # 0, 2, 4, 5


def test_outcomes_after_as_of_are_not_known_yet() -> None:
    r = report(as_of=T("2026-02-26"), end=T("2026-02-26"))
    last = {c.cohort: c for c in r.cohorts}["2026-02-23"]
    assert last.wins_so_far == 0  # L4 closes on the 27th
    assert r.total.wins_caught == 2


def test_cohorts_by_lead_source_group_missed_wins_by_the_lead_first_score() -> None:
    cohorts = {c.cohort: c for c in report(by="lead_source").cohorts}
    assert {k: (c.handed_over, c.wins_caught, c.wins_missed) for k, c in cohorts.items()} == {
        "ads": (0, 0, 1),
        "event": (1, 0, 0),
        "web": (3, 3, 0),
    }
    by_campaign = {c.cohort: c.handed_over for c in report(by="campaign").cohorts}
    assert by_campaign == {"(none)": 1, "c1": 2, "c2": 1}
    by_threshold = {c.cohort: c.handed_over for c in report(by="threshold_version").cohorts}
    assert by_threshold == {"3": 3, "4": 1}


def test_calibration_bins_first_scores_whose_horizon_has_closed_by_probability() -> None:
    bins = report().calibration
    # L4's first score (20 Feb) is not 10 days old; L1 won within 10 days of its first score, L2 and L5 later
    assert [(b.leads, b.mean_probability, b.won) for b in bins] == [(1, 0.1, 0), (1, 0.2, 0), (1, 0.3, 1), (1, 0.8, 0)]
    assert bins[2].observed_rate == 1.0 and bins[2].interval == pytest.approx(wilson(1, 1))


def test_a_period_without_hand_overs_reports_zeros_not_errors() -> None:
    r = report(start=T("2025-01-01"), end=T("2025-02-01"))
    assert r.cohorts == [] and r.total.handed_over == 0 and r.total.realised_precision is None
    assert r.calibration == []


def test_an_unknown_grouping_or_an_empty_period_is_refused() -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        report(by="owner")
    with pytest.raises(ValueError, match="start must be before end"):
        report(start=T("2026-02-01"), end=T("2026-01-01"))
