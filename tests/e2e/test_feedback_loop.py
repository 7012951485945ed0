"""The feedback loop end to end on demo data split in time, through a real server.

Train on the months before 1 March 2026 (30-day horizon); replay the next 75 days through the API day by day
(each lead scored when it is created and on each day it has touches, as a CRM would); post the outcomes the
CRM would post and some verdicts; then check /v1/performance against a direct count from the answers and the
data, the webhook receiver (which fails every first attempt) against the hand-overs, and retrain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.api.conftest import start_server, stop_server
from tests.conftest import leadscore_in_process, make_config
from tests.unit.test_webhook import SECRET, Receiver
from training.data import load_crm_data, write_table
from training.pipeline import train

CUT = pd.Timestamp("2026-03-01", tz="UTC")
REPLAY_END = CUT + pd.Timedelta(days=75)
HORIZON = 30
LEADS = 100  # replayed (of those created in the replay window)


def monday(t: pd.Timestamp) -> str:
    day = t.tz_convert("UTC").floor("D")
    return (day - pd.Timedelta(days=day.day_of_week)).strftime("%Y-%m-%d")


def write_export(data_dir: Path, out: Path, until: pd.Timestamp) -> None:
    """The export a CRM would have given at ``until``: what existed and had happened by then."""
    leads = pd.read_parquet(data_dir / "leads.parquet")
    touches = pd.read_parquet(data_dir / "touchpoints.parquet")
    outcomes = pd.read_parquet(data_dir / "outcomes.parquet")
    out.mkdir(parents=True, exist_ok=True)
    write_table(leads[leads["created_at"] <= until], out / "leads.parquet")
    write_table(touches[touches["occurred_at"] <= until], out / "touchpoints.parquet")
    write_table(outcomes[outcomes["closed_at"] <= until], out / "outcomes.parquet")


def body(lead: pd.Series, touches: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, object]:
    attributes = {k: (None if pd.isna(v) else v) for k, v in lead.items() if k not in ("lead_id", "created_at")}
    return {
        "lead_id": lead["lead_id"],
        "created_at": lead["created_at"].isoformat(),
        "as_of": as_of.isoformat(),
        "attributes": attributes,
        "touchpoints": [
            {
                "occurred_at": t.occurred_at.isoformat(),
                "touch_type": t.touch_type,
                "channel": t.channel,
                "campaign": None if pd.isna(t.campaign) else t.campaign,
            }
            for t in touches.itertuples()
            if t.occurred_at <= as_of
        ],
    }


def test_the_loop_replayed_through_the_api_matches_a_direct_count(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    early = tmp_path / "early"
    write_export(demo_dir, early, CUT)
    first = train(make_config(home, early, promote=True, horizon_days=HORIZON, tune=False))
    assert first.promoted

    data = load_crm_data(demo_dir)
    fresh = data.leads[
        (data.leads["created_at"] > CUT) & (data.leads["created_at"] <= REPLAY_END - pd.Timedelta(days=10))
    ]
    replayed = fresh.sort_values("lead_id").iloc[:LEADS]
    touches = data.touchpoints[data.touchpoints["lead_id"].isin(replayed["lead_id"])]
    closes = data.outcomes.set_index("lead_id")
    by_lead = {lead_id: t for lead_id, t in touches.groupby("lead_id")}

    # The moments a CRM asks for a score: at creation, and at the end of each day with a touch (until the close).
    calls: list[tuple[pd.Timestamp, str]] = []
    for lead in replayed.itertuples():
        end = min(REPLAY_END, closes["closed_at"].get(lead.lead_id, REPLAY_END))
        calls.append((lead.created_at, lead.lead_id))
        mine = by_lead.get(lead.lead_id)
        if mine is not None:
            days = mine["occurred_at"].dt.floor("D") + pd.Timedelta(hours=23, minutes=59)
            calls += [(d, lead.lead_id) for d in sorted(set(days)) if lead.created_at < d <= end]
    calls.sort()
    leads_by_id = replayed.set_index("lead_id", drop=False)

    receiver = Receiver(fail_first=1)  # every hand-over's first delivery fails
    server = start_server(
        home,
        {
            "LEADSCORE_HORIZON_DAYS": str(HORIZON),
            "LEADSCORE_WEBHOOK_URL": receiver.url,
            "LEADSCORE_WEBHOOK_SECRET": SECRET,
            "LEADSCORE_SCORE_LOG_FLUSH_SECONDS": "0.2",
        },
    )
    try:
        handed: dict[str, tuple[pd.Timestamp, float]] = {}  # the first qualified answer of each lead
        with server.client() as c:
            for _day, group in pd.DataFrame(calls, columns=["as_of", "lead_id"]).groupby(
                pd.Grouper(key="as_of", freq="D")
            ):
                bodies = [
                    body(leads_by_id.loc[row.lead_id], by_lead.get(row.lead_id, touches.iloc[:0]), row.as_of)
                    for row in group.itertuples()
                ]
                for start in range(0, len(bodies), 200):
                    answer = c.post(
                        "/v1/score/batch", json={"leads": bodies[start : start + 200]}, headers=server.headers("crm")
                    )
                    assert answer.status_code == 200, answer.text
                    for sent, result in zip(bodies[start : start + 200], answer.json()["results"], strict=True):
                        if result["qualified"] and result["lead_id"] not in handed:
                            handed[result["lead_id"]] = (pd.Timestamp(str(sent["as_of"])), result["probability"])
            assert 10 <= len(handed) < LEADS, f"{len(handed)} leads handed over"

            # The CRM posts the outcomes it knows at the end of the replay; sales give verdicts on some hand-overs.
            known = data.outcomes[data.outcomes["lead_id"].isin(replayed["lead_id"])]
            known = known[known["closed_at"] <= REPLAY_END]
            rows = [
                {"lead_id": o.lead_id, "outcome": o.outcome, "closed_at": o.closed_at.isoformat()}
                for o in known.itertuples()
            ]
            posted = c.post("/v1/outcomes", json={"outcomes": rows}, headers=server.headers("crm")).json()
            assert (posted["recorded"], posted["unknown_leads"]) == (len(rows), 0)
            verdicts = {}
            for i, lead_id in enumerate(sorted(handed)):
                verdict = ("accepted", None) if i % 3 else ("rejected", ("no_budget", "bad_timing")[i % 2])
                verdicts[lead_id] = verdict
                sent = {"lead_id": lead_id, "verdict": verdict[0], "reason": verdict[1]}
                assert c.post("/v1/feedback", json=sent, headers=server.headers("sales")).status_code == 200

            period = {"from": CUT.isoformat(), "to": REPLAY_END.isoformat(), "as_of": REPLAY_END.isoformat()}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                report = c.get("/v1/performance", params=period, headers=server.headers("marketing")).json()
                if report["total"]["handed_over"] == len(handed):
                    break
                time.sleep(0.2)

        # The direct count, from the answers received and the data.
        wins = known[known["outcome"] == "won"].set_index("lead_id")["closed_at"]
        expected: dict[str, Counter[str]] = {}
        for lead_id, (at, _) in handed.items():
            cohort = expected.setdefault(monday(at), Counter())
            cohort["handed_over"] += 1
            mature = at + pd.Timedelta(days=HORIZON) <= REPLAY_END
            won = lead_id in wins and at <= wins[lead_id] <= at + pd.Timedelta(days=HORIZON)
            cohort["mature" if mature else "maturing"] += 1
            cohort["won_within_horizon" if mature else "wins_so_far"] += int(won)
            cohort[verdicts[lead_id][0]] += 1
        for lead_id, closed in wins.items():
            if CUT <= closed < REPLAY_END:
                caught = lead_id in handed and handed[lead_id][0] <= closed
                expected.setdefault(monday(closed), Counter())["wins_caught" if caught else "wins_missed"] += 1
        fields = ("handed_over", "mature", "maturing", "won_within_horizon", "wins_so_far", "accepted", "rejected")
        fields += ("wins_caught", "wins_missed")
        got = {c["cohort"]: {f: c[f] for f in fields} for c in report["cohorts"]}
        assert got == {week: {f: counts[f] for f in fields} for week, counts in expected.items()}
        total = report["total"]
        assert total["handed_over"] == len(handed)
        mature_p = [p for at, p in handed.values() if at + pd.Timedelta(days=HORIZON) <= REPLAY_END]
        assert total["expected_precision"] == pytest.approx(sum(mature_p) / len(mature_p))
        assert total["rejected_by_reason"] == dict(Counter(v[1] for v in verdicts.values() if v[0] == "rejected"))

        # The webhook got each hand-over exactly once, though every first attempt failed.
        deadline = time.monotonic() + 60
        while len(set(receiver.accepted)) < len(handed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(receiver.accepted) == sorted(handed)  # each once: no repeat after a 2xx
        assert all(receiver.tries[lead_id] == 2 for lead_id in handed)
        for headers, raw in receiver.received:
            signed = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
            assert headers["X-Leadscore-Signature"] == signed
        sample = json.loads(receiver.received[-1][1])
        assert pytest.approx(handed[sample["lead_id"]][1]) == sample["probability"]
    finally:
        stop_server(server)
        receiver.server.shutdown()

    # Retrain on the export of the replay's end plus the outcomes received: promoted or kept, with its reason.
    late = tmp_path / "late"
    write_export(demo_dir, late, REPLAY_END)
    monkeypatch.setenv("LEADSCORE_HORIZON_DAYS", str(HORIZON))
    done = leadscore_in_process(home, "retrain", "--data", str(late), "--no-tune")
    assert done.returncode == 0, done.stderr
    assert f"outcomes received through the API: {len(rows)} leads" in done.stderr
    assert re.search(r"outcomes received through the API: \d+; \d+ added, \d+ replace the export's", done.stderr)
    verdict_line = done.stdout.strip().splitlines()[-1]
    assert re.match(r"(promoted version 2 to champion: test ROC AUC|kept champion version 1: )", verdict_line), (
        verdict_line
    )
