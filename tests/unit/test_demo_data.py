"""The demo CRM is deterministic and behaves like a B2B funnel."""

from __future__ import annotations

import pandas as pd
import pytest

from training.demo_data import generate_demo_data


@pytest.fixture(scope="module")
def demo():
    return generate_demo_data(n_leads=20_000, seed=3)


def test_same_seed_same_data_other_seed_other_data(demo) -> None:
    again = generate_demo_data(n_leads=20_000, seed=3)
    pd.testing.assert_frame_equal(demo.touchpoints, again.touchpoints)
    pd.testing.assert_frame_equal(demo.outcomes, again.outcomes)
    other = generate_demo_data(n_leads=2_000, seed=4)
    assert not other.leads["lead_source"].equals(demo.leads["lead_source"].iloc[:2_000])


def test_win_rate_is_a_few_percent_and_many_leads_stay_open(demo) -> None:
    win_rate = (demo.outcomes["outcome"] == "won").sum() / len(demo.leads)
    open_share = 1 - len(demo.outcomes) / len(demo.leads)
    assert 0.02 <= win_rate <= 0.08
    assert 0.3 <= open_share <= 0.8


def test_five_to_fifteen_touches_before_a_won_close(demo) -> None:
    won = demo.outcomes[demo.outcomes["outcome"] == "won"]
    touches = won.merge(demo.touchpoints, on="lead_id")
    before = touches[touches["occurred_at"] <= touches["closed_at"]].groupby("lead_id").size()
    assert 5 <= before.median() <= 15


def test_cycles_last_weeks_to_months(demo) -> None:
    closed = demo.outcomes.merge(demo.leads[["lead_id", "created_at"]], on="lead_id")
    cycle_days = (closed["closed_at"] - closed["created_at"]).dt.days
    assert 14 <= cycle_days.median() <= 180


def test_noise_exists_bots_duplicates_and_silent_leads(demo) -> None:
    per_lead = demo.touchpoints.groupby("lead_id").size()
    assert (per_lead > 30).sum() > 0  # bots
    assert demo.touchpoints.duplicated(["lead_id", "occurred_at", "touch_type"]).sum() > 0
    assert len(demo.leads) - per_lead.size > 0  # leads with no touches at all


def test_channel_mix_drifts_over_time(demo) -> None:
    leads = demo.leads.sort_values("created_at")
    first, last = leads.iloc[: len(leads) // 4], leads.iloc[-len(leads) // 4 :]
    share = lambda df: (df["lead_source"] == "paid_social").mean()  # noqa: E731
    assert share(last) > share(first) * 1.5


def test_fit_and_intent_both_matter(demo) -> None:
    won = set(demo.outcomes.loc[demo.outcomes["outcome"] == "won", "lead_id"])
    leads = demo.leads.assign(won=demo.leads["lead_id"].isin(won))
    by_level = leads.groupby("job_level")["won"].mean()
    assert by_level["vp"] > 2 * by_level["student"]
    demo_req = set(demo.touchpoints.loc[demo.touchpoints["touch_type"] == "demo_request", "lead_id"])
    leads["asked"] = leads["lead_id"].isin(demo_req)
    assert leads.loc[leads["asked"], "won"].mean() > 3 * leads.loc[~leads["asked"], "won"].mean()
