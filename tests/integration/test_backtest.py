"""Backtest: the replayed trade-off of a trained demo model against what the data's own last weeks show."""

from __future__ import annotations

import pandas as pd

from models.registry import configure_tracking, load_champion
from serving.thresholds import tradeoff_of
from tests.conftest import TrainedWorld
from training.data import load_crm_data

WEEK = pd.Timedelta(weeks=1)


def test_at_the_lowest_cutoff_the_replay_matches_the_last_weeks_of_the_data(trained: TrainedWorld) -> None:
    configure_tracking(trained.config.tracking_uri or "")
    loaded = load_champion("leadscore", "champion", trained.config.cache_dir)
    trade = tradeoff_of(loaded)  # the stored test predictions, replayed as the server and the CLI do
    lowest = trade.analyze(float(trade.cutoffs[-1]))
    assert lowest.leads_handed_over == lowest.test_leads  # every lead is handed over when first scored

    # What the data itself shows, counted from the raw tables over its last 12 weeks: new leads a week, and
    # won deals closed a week (whatever the lead's age: the wins sales receives when every lead is handed over).
    data = load_crm_data(trained.data_dir)
    end = data.end_time
    created = data.leads.set_index("lead_id")["created_at"]
    new_per_week = ((created > end - 12 * WEEK) & (created <= end)).sum() / 12
    won = data.outcomes[data.outcomes["outcome"] == "won"]
    wins_per_week = ((won["closed_at"] > end - 12 * WEEK) & (won["closed_at"] <= end)).sum() / 12

    handed, wins = lowest.qualified_per_week, lowest.expected_wins_per_week
    # the inflow is counted over the same 12 weeks, so this checks the unit: each lead handed over once
    assert handed.low <= new_per_week <= handed.high, (handed, new_per_week)
    assert wins.low <= wins_per_week <= wins.high, (wins, wins_per_week)
    # The intervals are tight enough to mean something: a share taken over scoring moments instead of leads
    # (about 2.5 moments a lead here) would fall outside them.
    assert handed.high - handed.low < 0.5 * handed.value and wins.high - wins.low < 1.5 * wins.value
    moments_per_lead = lowest.test_moments / lowest.test_leads
    assert moments_per_lead > 1.5 and not (handed.low <= new_per_week * moments_per_lead <= handed.high)
