"""The agreement's rules on a real SQLite store: owners, provisional mappings, reads that never write.

(The races are in tests/integration/test_postgres.py, on both backends.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from models.scoring_model import GradeCutoffs
from models.threshold_analysis import TradeOff
from serving.errors import Conflict, Forbidden
from serving.store import InvalidOwner, KeyStore, Principal, make_engine
from serving.thresholds import Grades, ThresholdService, ThresholdStore, policies

MIA_MARKETING = Principal(1, "mia-marketing", "marketing", "mia@example.com")
MIA_SALES = Principal(2, "mia-sales", "sales", "mia@example.com")
SOL_SALES = Principal(3, "sol", "sales", "sol@example.com")
MAX_MARKETING = Principal(4, "max", "marketing", "max@example.com")
DEFAULTS = GradeCutoffs(0.6, 0.4, 0.2, 0.3)


@pytest.fixture
def store(tmp_path: Path) -> ThresholdStore:
    return ThresholdStore(make_engine(f"sqlite:///{tmp_path / 'leadscore.db'}"))


def count_policies(store: ThresholdStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(policies)).scalar_one())


def test_one_person_cannot_approve_their_own_proposal_with_a_key_of_the_other_side(store: ThresholdStore) -> None:
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "mine")
    with pytest.raises(Forbidden, match=r"mia@example\.com made proposal"):
        store.decide(made.id, MIA_SALES, True, "approving my own")
    assert store.get(made.id).decisions == [] and store.get(made.id).status == "proposed"
    assert store.decide(made.id, SOL_SALES, True, "fine").status == "active"


def test_one_person_cannot_approve_a_system_proposal_for_both_sides(store: ThresholdStore) -> None:
    from serving.thresholds import SYSTEM_PRINCIPAL

    made = store.propose(SYSTEM_PRINCIPAL, "leadscore", "2", 0.3, Grades(0.6, 0.4, 0.2), "mapped")
    assert store.decide(made.id, MIA_MARKETING, True, "").status == "proposed"
    with pytest.raises(Forbidden, match="already decided"):
        store.decide(made.id, MIA_SALES, True, "")
    assert store.decide(made.id, SOL_SALES, True, "").status == "active"
    assert [d["owner"] for d in store.get(made.id).decisions] == ["mia@example.com", "sol@example.com"]


def test_a_key_without_an_owner_may_not_propose_or_decide(store: ThresholdStore) -> None:
    legacy = Principal(9, "old-key", "sales", None)
    with pytest.raises(Forbidden, match="--owner EMAIL"):
        store.propose(legacy, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "x")
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "x")
    with pytest.raises(Forbidden, match="belongs to no person"):
        store.decide(made.id, legacy, True, "")


def test_a_decided_proposal_is_a_conflict_not_a_second_decision(store: ThresholdStore) -> None:
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "x")
    store.decide(made.id, SOL_SALES, False, "no")
    with pytest.raises(Conflict, match="already rejected"):
        store.decide(made.id, Principal(5, "other", "sales", "other@example.com"), True, "")
    assert len(store.get(made.id).decisions) == 1


def test_keys_belong_to_a_person(tmp_path: Path) -> None:
    keys = KeyStore(make_engine(f"sqlite:///{tmp_path / 'k.db'}"))
    key, info = keys.create("sales", "laptop", owner="  Sol@Example.COM ")
    assert info.owner == "sol@example.com" and keys.authenticate(key).owner == "sol@example.com"  # type: ignore[union-attr]
    for bad in ("", "sol", "sol@", "sol @example.com", "@example.com"):
        with pytest.raises(InvalidOwner):
            keys.create("sales", owner=bad)


def test_a_store_made_before_owners_gets_the_columns_and_its_keys_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, role VARCHAR(20) NOT NULL,"
            " key_hash VARCHAR(64) NOT NULL UNIQUE, key_hint VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL,"
            " revoked_at DATETIME)"
        )
        from serving.store import hash_key

        db.execute(
            "INSERT INTO api_keys (name, role, key_hash, key_hint, created_at) VALUES (?, ?, ?, ?, ?)",
            ("old", "crm", hash_key("lsk_old"), "lsk_old", "2026-01-01 00:00:00"),
        )
    keys = KeyStore(make_engine(f"sqlite:///{path}"))
    assert keys.authenticate("lsk_old") == Principal(1, "old", "crm", None)
    _, info = keys.create("crm", owner="ops@example.com")
    assert [k.owner for k in keys.list()] == [None, "ops@example.com"] and info.key_id == 2


# ---- what is in force -------------------------------------------------------------------------------------
def tiny_tradeoff(probabilities: list[float]) -> TradeOff:
    """One scoring moment per lead; the labels do not matter to the mapping by share of leads."""
    n = len(probabilities)
    when = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "as_of": [when] * n,
            "created_at": [when] * n,
            "probability": probabilities,
            "label": [i % 2 for i in range(n)],
        }
    )
    return TradeOff.from_predictions(frame, leads_per_week=10.0, horizon_days=90)


# Version 1 scores the ten test leads 0.05 .. 0.95; version 2 half as high.
V1 = [round(0.05 + 0.1 * i, 2) for i in range(10)]
TRADEOFFS = {"1": tiny_tradeoff(V1), "2": tiny_tradeoff([p / 2 for p in V1])}


def agreed_policy_for_version_1(store: ThresholdStore) -> int:
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.5, Grades(0.85, 0.65, 0.35), "agreed on v1")
    store.decide(made.id, SOL_SALES, True, "")
    return made.id


def test_reading_what_is_in_force_never_writes(store: ThresholdStore) -> None:
    agreed_policy_for_version_1(store)
    before = count_policies(store)
    service = ThresholdService(store)
    force = service.refresh("leadscore", "2", DEFAULTS)  # the CLI's read: no trade-off, no mapping
    assert count_policies(store) == before
    assert force.version == 0 and force.cutoffs == DEFAULTS and not force.approved
    assert "not mapped to version 2" in force.explanation


def test_a_new_version_gets_a_provisional_mapping_of_its_own_opened_once(store: ThresholdStore) -> None:
    policy_id = agreed_policy_for_version_1(store)
    service = ThresholdService(store)
    force = service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__)
    # share of leads handed over at v1's cut-offs: 0.5 -> 5 of 10, 0.85 -> 2, 0.65 -> 4, 0.35 -> 7; the v2 cut-off
    # handing over as many leads is the 5th, 2nd, 4th and 7th highest v2 probability.
    assert force.cutoffs == GradeCutoffs(a=0.425, b=0.325, c=0.175, qualified=0.275)
    assert force.version not in (0, policy_id) and force.applied is not None and force.applied.id == force.version
    assert force.mapped_from_model_version == "1" and not force.approved
    assert "NOT APPROVED" in force.explanation and "awaiting approval by both sides" in force.explanation
    assert [p.id for p in force.pending] == [force.version]
    # Another process (or a restart) seeing the same change opens nothing new.
    again = ThresholdService(store).refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__)
    assert again.version == force.version and count_policies(store) == 2
    # The scoring path reads memory only: the same answer, and the defaults for a version never read.
    assert service.in_force("leadscore", "2", DEFAULTS) == force
    assert service.in_force("leadscore", "3", DEFAULTS).version == 0


def test_a_rejected_mapping_stays_identifiable_until_both_sides_agree(store: ThresholdStore) -> None:
    agreed_policy_for_version_1(store)
    service = ThresholdService(store)
    mapped = service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__).version
    store.decide(mapped, SOL_SALES, False, "too many leads")
    force = service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__)
    assert force.version == mapped and not force.approved
    assert "rejected by sales: propose new cut-offs" in force.explanation
    made = store.propose(MAX_MARKETING, "leadscore", "2", 0.3, Grades(0.45, 0.35, 0.2), "a fresh start on v2")
    assert "awaiting a decision: proposal" in service.refresh("leadscore", "2", DEFAULTS).explanation
    store.decide(made.id, SOL_SALES, True, "")
    force = service.refresh("leadscore", "2", DEFAULTS)
    assert force.version == made.id and force.approved and force.cutoffs.qualified == 0.3


def test_a_failing_mapping_is_retried_with_back_off_and_applies_named_defaults(store: ThresholdStore) -> None:
    agreed_policy_for_version_1(store)
    calls: list[str] = []

    def unreachable(version: str) -> TradeOff:
        calls.append(version)
        raise OSError("registry unreachable")

    service = ThresholdService(store, first_backoff_seconds=60)
    force = service.refresh("leadscore", "2", DEFAULTS, unreachable)
    assert force.version == 0 and force.cutoffs == DEFAULTS and "registry unreachable" in force.explanation
    for _ in range(5):  # within the back-off: not tried again
        service.refresh("leadscore", "2", DEFAULTS, unreachable)
    assert len(calls) == 1
    service._failures = {k: (0.0, b, e) for k, (_, b, e) in service._failures.items()}  # the back-off elapsed
    assert service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__).version > 0


def test_probabilities_used_in_the_hand_worked_mapping() -> None:
    """The numbers the mapping test works out by hand."""
    v2 = np.sort(np.array(V1) / 2)[::-1]
    assert [float(v2[k - 1]) for k in (5, 2, 4, 7)] == [0.275, 0.425, 0.325, 0.175]


def test_a_proposal_for_a_model_no_longer_served_cannot_be_approved(store: ThresholdStore) -> None:
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "for v1")
    with pytest.raises(Conflict, match="version 2 is served now"):
        store.decide(made.id, SOL_SALES, True, "", served_version="2")
    assert store.get(made.id).decisions == []
    assert store.decide(made.id, SOL_SALES, False, "stale", served_version="2").status == "rejected"


def test_workers_creating_or_upgrading_a_store_at_the_same_moment_all_start(tmp_path: Path) -> None:
    """`serve --workers N` on a new home, or on a home of an older Leadscore: every worker's store opens."""
    import threading

    errors: list[BaseException] = []
    for round_ in range(6):
        path = tmp_path / f"store-{round_}.db"
        if round_ % 2:  # a store made before keys had owners
            with sqlite3.connect(path) as db:
                db.execute(
                    "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, role VARCHAR(20) NOT "
                    "NULL, key_hash VARCHAR(64) NOT NULL UNIQUE, key_hint VARCHAR(16) NOT NULL, created_at DATETIME "
                    "NOT NULL, revoked_at DATETIME)"
                )
        barrier = threading.Barrier(4)

        def open_store(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                KeyStore(make_engine(f"sqlite:///{path}")).list()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_a_mapping_of_a_policy_no_longer_agreed_is_outdated_and_cannot_be_approved(store: ThresholdStore) -> None:
    agreed_policy_for_version_1(store)
    service = ThresholdService(store)
    old_mapping = service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__).version
    store.decide(old_mapping, MIA_MARKETING, True, "half of the two sides")
    newer = store.propose(MAX_MARKETING, "leadscore", "1", 0.4, Grades(0.85, 0.65, 0.35), "agreed again on v1")
    store.decide(newer.id, SOL_SALES, True, "")
    assert store.get(old_mapping).status == "outdated"
    with pytest.raises(Conflict, match="no longer the agreed policy"):
        store.decide(old_mapping, SOL_SALES, True, "one click on the first pending one")
    force = service.refresh("leadscore", "2", DEFAULTS, TRADEOFFS.__getitem__)
    assert force.version not in (0, old_mapping) and force.applied.mapped_from_policy == newer.id  # type: ignore[union-attr]
    assert [p.id for p in force.pending] == [force.version] and store.active().id == newer.id  # type: ignore[union-attr]


def test_one_person_has_one_owner_spelling_and_invisible_characters_are_refused() -> None:
    from serving.store import normalise_owner

    composed, decomposed = "Jos\u00e9@Example.com", "Jose\u0301@example.COM"
    assert normalise_owner(composed) == normalise_owner(decomposed) == "jos\u00e9@example.com"
    for hidden in ("mia\u200b@example.com", "mia@exam\u200eple.com", "mia\x00@example.com"):
        with pytest.raises(InvalidOwner, match="invisible characters"):
            normalise_owner(hidden)


def test_reasons_the_audit_history_cannot_keep_are_refused_by_field(store: ThresholdStore) -> None:
    from serving.errors import InvalidLeadData, NotFound

    for reason, says in (("nul \x00 here", r"U\+0000"), ("x" * 2001, "at most 2000")):
        with pytest.raises(InvalidLeadData, match=says) as err:
            store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), reason)
        assert err.value.field == ["body", "reason"]
    made = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "line one\nline two\tok")
    with pytest.raises(InvalidLeadData, match=r"U\+0007"):
        store.decide(made.id, SOL_SALES, True, "bell \a")
    with pytest.raises(NotFound):
        store.decide(2**31, SOL_SALES, True, "")
    assert store.get(made.id).decisions == []


def test_a_reading_taken_before_a_decision_never_overwrites_one_taken_after(store: ThresholdStore) -> None:
    """The background refresh read the old policy, then the deciding route refreshed: the route's reading stays."""
    import threading

    first = store.propose(MIA_MARKETING, "leadscore", "1", 0.3, Grades(0.6, 0.4, 0.2), "first")
    store.decide(first.id, SOL_SALES, True, "")
    started, release = threading.Event(), threading.Event()

    class SlowStore(ThresholdStore):
        slow = True

        def active(self):  # type: ignore[no-untyped-def]
            found = super().active()
            if self.slow and threading.current_thread().name == "refresher":
                self.slow = False
                started.set()
                release.wait(5)  # the decision commits while this reading is in hand
            return found

    service = ThresholdService(SlowStore(store.engine))
    refresher = threading.Thread(target=service.refresh, args=("leadscore", "1", DEFAULTS), name="refresher")
    refresher.start()
    assert started.wait(5)
    second = store.propose(MAX_MARKETING, "leadscore", "1", 0.4, Grades(0.6, 0.45, 0.2), "second")
    store.decide(second.id, SOL_SALES, True, "")
    route = threading.Thread(target=service.refresh, args=("leadscore", "1", DEFAULTS))
    route.start()
    route.join(0.5)  # done by now, or waiting for the reading in hand to be kept first
    release.set()
    refresher.join(5)
    route.join(5)
    assert service.in_force("leadscore", "1", DEFAULTS).version == second.id


def test_workers_recording_the_last_model_at_once_never_fail(tmp_path: Path) -> None:
    import threading

    from models.registry import LoadedModel
    from serving.model_source import remember_last_loaded

    errors: list[BaseException] = []

    def record(version: str) -> None:
        loaded = LoadedModel(None, "leadscore", version, None, tmp_path / version)  # type: ignore[arg-type]
        for _ in range(300):
            try:
                remember_last_loaded(tmp_path, loaded)
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=record, args=(v,)) for v in ("1", "2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import json

    assert errors == [] and json.loads((tmp_path / "last_loaded.json").read_text())["version"] in {"1", "2", "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["last_loaded.json"]  # no temporary file left behind
