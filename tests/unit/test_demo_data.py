"""The demo CRM is deterministic and behaves like a B2B funnel."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training.demo_data import generate_demo_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    return generate_demo_data(n_leads=20_000, seed=3)


TABLES = ("leads", "touchpoints", "outcomes")


def fingerprint(n_leads: int, seed: int) -> str:
    """A digest of the generated tables: columns, dtypes, index and every value."""
    data = generate_demo_data(n_leads=n_leads, seed=seed)
    digest = hashlib.sha256(str(data.end).encode())
    for name in TABLES:
        table = getattr(data, name)
        digest.update(repr((name, list(table.columns), [str(t) for t in table.dtypes])).encode())
        digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def test_same_seed_same_data_other_seed_other_data(demo) -> None:
    again = generate_demo_data(n_leads=20_000, seed=3)  # a second, independent generation
    assert again.leads is not demo.leads
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(again, name), getattr(demo, name), check_exact=True)
    assert again.end == demo.end
    # Another seed, same size: the same shape of CRM, other leads (so the comparison above could fail).
    other = generate_demo_data(n_leads=20_000, seed=4)
    assert len(other.leads) == len(demo.leads) and other.end == demo.end
    for column in ("created_at", "lead_source", "industry", "job_level"):
        assert (other.leads[column] != demo.leads[column]).mean() > 0.3, column
    assert len(other.touchpoints) != len(demo.touchpoints)
    assert not other.outcomes["lead_id"].equals(demo.outcomes["lead_id"])


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


def test_another_process_generates_the_same_data() -> None:
    # Not only within one process: another interpreter with another string-hash seed (set and dict orders of
    # strings, hash()) generates the very same CRM, as `leadscore demo` does on another machine.
    code = "from tests.unit.test_demo_data import fingerprint; print(fingerprint(3_000, 3))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    assert out.stdout.strip() == fingerprint(3_000, 3)
    assert fingerprint(3_000, 4) != fingerprint(3_000, 3)
