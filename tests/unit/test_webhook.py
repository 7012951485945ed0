"""The hand-over webhook against a real local HTTP receiver that fails on purpose."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from serving.results_store import ResultsStore, ScoreRecord
from serving.store import make_engine
from serving.webhook import SIGNATURE_HEADER, WebhookSender, check_url, signature

SECRET = "s3cret"
DAY = datetime(2026, 1, 5, tzinfo=UTC)


class Receiver:
    """Answers 500 to the first ``fail_first`` POSTs of each lead, then 200; keeps everything received."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.delay = 0.0  # seconds each answer takes
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.accepted: list[str] = []
        self.tries: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.received.append((dict(self.headers), body))
                lead = json.loads(body)["lead_id"]
                receiver.tries[lead] = receiver.tries.get(lead, 0) + 1
                ok = receiver.tries[lead] > receiver.fail_first
                if ok:
                    receiver.accepted.append(lead)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    return ResultsStore(make_engine(f"sqlite:///{tmp_path / 'leadscore.db'}"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


def hand_over(store: ResultsStore, lead_id: str) -> None:
    store.append_scores(
        [
            ScoreRecord(
                lead_id,
                DAY,
                DAY,
                DAY - timedelta(days=1),
                "4",
                7,
                0.61,
                "A",
                True,
                "api",
                reasons=({"feature": "demo", "description": "asked for a demo", "impact": 0.8},),
            )
        ],
        notify=True,
    )


def test_each_hand_over_arrives_signed_and_is_retried_until_taken(store: ResultsStore, receiver: Receiver) -> None:
    for lead in ("a", "b"):
        hand_over(store, lead)
    results: list[str] = []
    sender = WebhookSender(store, receiver.url, SECRET, first_backoff_seconds=0.0, on_result=results.append)
    with httpx.Client() as client:
        delivered = [sender.deliver_due(client) for _ in range(4)]
    assert delivered == [0, 0, 2, 0]  # two failures each, then taken, then nothing left to send
    assert sorted(receiver.accepted) == ["a", "b"] and results.count("failed") == 4
    assert store.undelivered() == 0
    headers, body = receiver.received[-1]
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    keys = {json.loads(b)["lead_id"]: set() for _, b in receiver.received}
    for h, b in receiver.received:
        keys[json.loads(b)["lead_id"]].add(h["Idempotency-Key"])
    assert all(len(k) == 1 for k in keys.values()) and keys["a"] != keys["b"]  # one key per hand-over, every try
    payload = json.loads(body)
    assert payload == {
        "lead_id": payload["lead_id"],
        "probability": 0.61,
        "grade": "A",
        "reasons": [{"feature": "demo", "description": "asked for a demo", "impact": 0.8}],
        "handed_over_at": "2026-01-05T00:00:00+00:00",
        "model_version": "4",
        "threshold_version": 7,
    }


def test_a_failed_hand_over_waits_for_its_back_off(store: ResultsStore, receiver: Receiver) -> None:
    hand_over(store, "a")
    sender = WebhookSender(store, receiver.url, SECRET, first_backoff_seconds=600.0)
    with httpx.Client() as client:
        assert sender.deliver_due(client) == 0
        assert sender.deliver_due(client) == 0
    assert receiver.tries == {"a": 1}  # the second pass found nothing due
    assert [sender.backoff(n).total_seconds() for n in (1, 2, 3)] == [600.0, 1200.0, 2400.0]
    assert WebhookSender(store, receiver.url, SECRET, max_backoff_seconds=60).backoff(40).total_seconds() == 60


def test_an_unreachable_receiver_is_retried_not_lost(store: ResultsStore) -> None:
    hand_over(store, "a")
    sender = WebhookSender(store, "http://127.0.0.1:9/nothing-listens", SECRET, first_backoff_seconds=0.0)
    with httpx.Client() as client:
        assert sender.deliver_due(client) == 0
    row = store.hand_over_of("a")
    assert row is not None and row["attempts"] == 1 and "ConnectError" in row["last_error"]
    assert row["delivered_at"] is None


def test_two_senders_never_send_one_hand_over_at_the_same_time(store: ResultsStore) -> None:
    hand_over(store, "a")
    now = datetime.now(UTC)
    first = store.claim_due_hand_overs(now, timedelta(minutes=1))
    assert [r["lead_id"] for r in first] == ["a"]
    assert store.claim_due_hand_overs(now, timedelta(minutes=1)) == []  # claimed by the first
    assert len(store.claim_due_hand_overs(now + timedelta(minutes=2), timedelta(minutes=1))) == 1  # lease ran out


def test_hand_overs_made_without_a_webhook_are_never_sent(store: ResultsStore) -> None:
    store.append_scores([ScoreRecord("quiet", DAY, DAY, DAY, "4", 7, 0.9, "A", True, "api")])
    assert store.hand_over_of("quiet") is not None
    assert store.claim_due_hand_overs(datetime.now(UTC), timedelta(minutes=1)) == [] and store.undelivered() == 0


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_two_senders_working_through_a_slow_receiver_send_each_hand_over_once(store: ResultsStore) -> None:
    """Each hand-over is claimed just before its POST: a claim never runs out while its POST is under way
    (claiming a whole batch at once let the other sender send its tail again)."""
    receiver = Receiver(fail_first=0)
    receiver.delay = 0.2
    for i in range(6):
        hand_over(store, f"slow-{i}")
    senders = [WebhookSender(store, receiver.url, SECRET, timeout_seconds=1.0, lease_seconds=0.5) for _ in range(2)]

    def work(sender: WebhookSender) -> None:
        with httpx.Client() as client:
            deadline = time.monotonic() + 20
            while store.undelivered() and time.monotonic() < deadline:
                sender.deliver_due(client)

    threads = [threading.Thread(target=work, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receiver.server.shutdown()
    assert sorted(receiver.accepted) == [f"slow-{i}" for i in range(6)]  # each exactly once


def test_a_webhook_url_that_is_not_one_is_refused_naming_the_setting() -> None:
    for bad in ("http://crm.example.com:8O80/hook", "ftp://crm.example.com/hook", "crm.example.com/hook"):
        with pytest.raises(ValueError, match="LEADSCORE_WEBHOOK_URL"):
            check_url(bad)
    assert check_url("https://crm.example.com/hooks/leadscore") == "https://crm.example.com/hooks/leadscore"
