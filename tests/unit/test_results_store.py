"""The score log, hand-overs, outcomes and verdicts on a real SQLite store (PostgreSQL: tests/integration)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from serving.errors import Forbidden, InvalidLeadData
from serving.results_store import OutcomeRow, ResultsStore, ScoreRecord
from serving.schemas import LeadIn, ScoreOut, TouchIn
from serving.score_log import ScoreLog, campaign_of, record_of
from serving.store import Principal, make_engine

SOL = Principal(3, "sol-sales", "sales", "sol@example.com")
DAY = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    return ResultsStore(make_engine(f"sqlite:///{tmp_path / 'leadscore.db'}"))


def score(lead_id: str, p: float, qualified: bool, as_of: datetime = DAY, **kw: object) -> ScoreRecord:
    args = {
        "lead_id": lead_id,
        "scored_at": as_of,
        "as_of": as_of,
        "created_at": as_of - timedelta(days=2),
        "model_version": "1",
        "threshold_version": 0,
        "probability": p,
        "grade": "A" if qualified else "C",
        "qualified": qualified,
        "source": "api",
    }
    args.update(kw)
    return ScoreRecord(**args)  # type: ignore[arg-type]


def test_a_lead_is_handed_over_once_at_its_first_qualified_answer(store: ResultsStore) -> None:
    handed = store.append_scores(
        [score("a", 0.2, False), score("a", 0.6, True, DAY + timedelta(days=1)), score("b", 0.1, False)]
    )
    assert handed == 1
    assert store.append_scores([score("a", 0.9, True, DAY + timedelta(days=3))]) == 0  # later ones change nothing
    row = store.hand_over_of("a")
    assert row is not None and row["probability"] == 0.6
    assert store.hand_overs()["handed_over_at"].tolist() == [DAY + timedelta(days=1)]
    assert store.hand_over_of("b") is None
    assert len(store.scores()) == 4 and len(store.scores("a")) == 3
    first = store.scored_leads().set_index("lead_id")
    assert first.loc["a", "probability"] == 0.2 and first.loc["a", "first_as_of"] == DAY


def test_two_writers_racing_hand_a_lead_over_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    stores = [ResultsStore(make_engine(url)) for _ in range(2)]
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def write(s: ResultsStore, p: float) -> None:
        barrier.wait()
        counts.append(s.append_scores([score("race", p, True)]))

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in zip(stores, (0.5, 0.7), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0, 1]
    assert len(stores[0].hand_overs()) == 1


def test_pruning_deletes_old_log_rows_and_keeps_first_scores_and_hand_overs(store: ResultsStore) -> None:
    old = DAY - timedelta(days=500)
    store.append_scores([score("old", 0.7, True, old), score("new", 0.1, False)])
    assert store.prune_scores(timedelta(days=400), now=DAY) == 1
    assert store.scores()["lead_id"].tolist() == ["new"]
    assert set(store.scored_leads()["lead_id"]) == {"old", "new"} and store.hand_over_of("old") is not None


def test_outcomes_are_idempotent_corrections_are_new_rows_and_the_latest_counts(store: ResultsStore) -> None:
    store.append_scores([score("a", 0.5, True)])
    lost = OutcomeRow("a", "lost", DAY + timedelta(days=3))
    first = store.add_outcomes([lost, lost, OutcomeRow("ghost", "won", DAY)], "api:test")
    assert (first.received, first.recorded, first.unchanged, first.corrections) == (3, 2, 1, 0)
    assert (first.unknown_leads, first.unknown_lead_ids) == (1, ["ghost"])
    again = store.add_outcomes([lost], "api:test")
    assert (again.recorded, again.unchanged) == (0, 1)
    won = store.add_outcomes([OutcomeRow("a", "won", DAY + timedelta(days=9), 1200.0)], "api:test")
    assert (won.recorded, won.corrections, won.unknown_leads) == (1, 1, 0)
    latest = store.latest_outcomes().set_index("lead_id")
    assert latest.loc["a", "outcome"] == "won" and latest.loc["a", "amount"] == 1200.0
    assert latest.loc["a", "closed_at"] == DAY + timedelta(days=9)
    assert len(latest) == 2
    back = store.add_outcomes([lost], "api:test")  # lost again (the deal fell through): the latest counts
    assert (back.recorded, back.corrections) == (1, 1)
    assert store.latest_outcomes().set_index("lead_id").loc["a", "outcome"] == "lost"
    flip = store.add_outcomes(
        [OutcomeRow("b", "lost", DAY), OutcomeRow("b", "won", DAY), OutcomeRow("b", "won", DAY)], "x"
    )
    # only the lead's last row of a call counts; the earlier, different one is superseded (counted, not stored)
    assert (flip.recorded, flip.unchanged, flip.corrections, flip.superseded) == (1, 1, 0, 1)
    assert store.latest_outcomes().set_index("lead_id").loc["b", "outcome"] == "won"
    resent = store.add_outcomes(
        [OutcomeRow("b", "lost", DAY), OutcomeRow("b", "won", DAY), OutcomeRow("b", "won", DAY)], "x"
    )
    assert (resent.recorded, resent.unchanged, resent.superseded) == (0, 2, 1)  # the same call again: nothing new


def test_bad_outcome_rows_are_refused_naming_the_row_and_field(store: ResultsStore) -> None:
    with pytest.raises(InvalidLeadData) as caught:
        store.add_outcomes([OutcomeRow("a", "won", DAY), OutcomeRow("b", "maybe", DAY, -3.0)], "api:test")
    locs = [caught.value.field, *(path for path, _ in caught.value.more)]
    assert locs == [["body", "outcomes", 1, "outcome"], ["body", "outcomes", 1, "amount"]]
    assert store.latest_outcomes().empty  # nothing of the call was stored


def test_verdicts_follow_how_sales_qualifies(store: ResultsStore) -> None:
    store.append_scores([score("a", 0.6, True)])
    v = store.add_verdict(SOL, "a", "rejected", "no_budget", "said next year")
    assert (v.owner, v.handed_over_at) == ("sol@example.com", DAY)
    assert store.add_verdict(SOL, "never-handed", "accepted", None, None).handed_over_at is None
    for verdict, reason, note, field in [
        ("rejected", None, None, "reason"),
        ("accepted", "no_need", None, "reason"),
        ("rejected", "other", None, "note"),
        ("rejected", "too_expensive", None, "reason"),
        ("maybe", None, None, "verdict"),
        ("recycled", "bad_timing", "a\x00b", "note"),
    ]:
        with pytest.raises(InvalidLeadData) as caught:
            store.add_verdict(SOL, "a", verdict, reason, note)
        assert caught.value.field == ["body", field], (verdict, reason, note)
    store.add_verdict(SOL, "a", "recycled", "bad_timing", None)
    latest = store.latest_verdicts().set_index("lead_id")
    assert latest.loc["a", "verdict"] == "recycled" and latest.loc["a", "reason"] == "bad_timing"


def test_a_key_of_nobody_cannot_give_a_verdict(store: ResultsStore) -> None:
    with pytest.raises(Forbidden, match="--owner"):
        store.add_verdict(Principal(9, "legacy", "sales", None), "a", "accepted", None, None)


def lead(lead_id: str, **kw: object) -> LeadIn:
    return LeadIn(lead_id=lead_id, created_at=DAY - timedelta(days=1), **kw)  # type: ignore[arg-type]


def answer(lead_id: str, qualified: bool) -> ScoreOut:
    return ScoreOut(
        lead_id=lead_id,
        probability=0.7 if qualified else 0.1,
        score=70 if qualified else 10,
        grade="A" if qualified else "D",
        qualified=qualified,
        fit=None,
        engagement=None,
        trend="new",
        reasons=[],
        model_version="3",
        threshold_version=5,
    )


def test_the_first_touch_campaign_is_the_earliest_touch_naming_one_up_to_as_of() -> None:
    touches = [
        TouchIn(occurred_at=DAY, touch_type="email_open", campaign="late"),
        TouchIn(occurred_at=DAY - timedelta(hours=5), touch_type="web_visit", campaign=None),
        TouchIn(occurred_at=DAY - timedelta(hours=3), touch_type="web_visit", campaign=" spring "),
        TouchIn(occurred_at=DAY + timedelta(days=2), touch_type="email_open", campaign="future"),
    ]
    assert campaign_of(lead("x", touchpoints=touches), DAY) == "spring"
    record = record_of(lead("x", attributes={"lead_source": " Web ", "size": 3}), answer("x", True), DAY, "api")
    assert (record.lead_source, record.campaign, record.as_of, record.threshold_version) == ("Web", None, DAY, 5)


def test_the_writer_writes_in_batches_and_keeps_rows_a_failed_write_could_not_store(
    store: ResultsStore, tmp_path: Path
) -> None:
    written: list[tuple[int, int]] = []
    failures: list[int] = []
    writer = ScoreLog(
        store,
        timedelta(days=400),
        flush_seconds=3600,
        on_written=lambda r, h: written.append((r, h)),
        on_failed=lambda: failures.append(1),
    )
    writer.add([lead("a"), lead("b")], [answer("a", True), answer("b", False)], DAY, "batch")
    writer.add([lead("a")], [answer("a", True)], DAY, "api")
    working = store.engine
    store.engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    store.engine.dispose()
    (tmp_path / "other.db").unlink()
    (tmp_path / "other.db").mkdir()  # a directory where the database should be: every write fails
    with pytest.raises(DBAPIError):
        writer.flush()
    assert failures == [1] and written == []
    store.engine = working
    assert writer.flush() == 3 and written == [(3, 1)]
    assert store.scores()["source"].tolist() == ["batch", "batch", "api"]
    assert writer.flush() == 0


def test_a_full_queue_drops_and_counts_instead_of_growing(store: ResultsStore) -> None:
    dropped: list[int] = []
    writer = ScoreLog(store, timedelta(days=1), flush_seconds=3600, max_pending=2, on_dropped=dropped.append)
    writer.add([lead("a"), lead("b")], [answer("a", False), answer("b", False)], DAY, "batch")
    writer.add([lead("c")], [answer("c", False)], DAY, "api")
    assert dropped == [1] and writer.dropped == 1
    assert writer.flush() == 2


def test_the_writer_holds_the_write_lock_for_one_batch_at_a_time(store: ResultsStore) -> None:
    """Five answers with batch_size 2: three transactions (2, 2, 1 rows), in order, none lost."""
    written: list[tuple[int, int]] = []
    writer = ScoreLog(
        store, timedelta(days=1), flush_seconds=3600, batch_size=2, on_written=lambda r, h: written.append((r, h))
    )
    for name in "abcde":
        writer.add([lead(name)], [answer(name, False)], DAY, "api")
    assert writer.flush() == 5
    assert [rows for rows, _ in written] == [2, 2, 1]
    assert store.scores()["lead_id"].tolist() == list("abcde")


def test_an_older_store_gets_the_outbox_index_and_loses_the_retired_one(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:  # as a store made before the partial index
        conn.execute(text("DROP INDEX hand_overs_outbox"))
        conn.execute(text("CREATE INDEX hand_overs_undelivered ON hand_overs (delivered_at, next_attempt_at)"))
    engine.dispose()
    names = {i["name"] for i in inspect(make_engine(url)).get_indexes("hand_overs")}
    assert "hand_overs_outbox" in names and "hand_overs_undelivered" not in names
    with make_engine(url).connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT id FROM hand_overs WHERE hand_overs.notify IS 1 "
                "AND hand_overs.delivered_at IS NULL ORDER BY id LIMIT 1"
            )
        ).all()
    assert "hand_overs_outbox" in str(plan)  # the sender's query reads the outbox, not every hand-over
