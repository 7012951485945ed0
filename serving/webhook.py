"""The hand-over webhook: each lead handed over is POSTed to ``LEADSCORE_WEBHOOK_URL`` at least once.

The hand-overs table is the outbox (serving/results_store.py): a sender thread claims due hand-overs (a
lease, so that two server processes never send one at the same moment), POSTs each, and marks it delivered
on a 2xx answer; otherwise it retries with exponential back-off (1 s, 2 s, 4 s ... at most
``max_backoff_seconds``) until the receiver takes it. Nothing of this runs on the request path.

Each POST carries:

- body: ``{"lead_id", "probability", "grade", "reasons", "handed_over_at", "model_version", "threshold_version"}``
- ``X-Leadscore-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body with ``LEADSCORE_WEBHOOK_SECRET``
  (the scheme of GitHub's webhooks; compare with ``hmac.compare_digest``);
- ``Idempotency-Key``: the same on every attempt for one hand-over, so the receiver can drop repeats
  (at-least-once delivery means a receiver may see a hand-over twice, e.g. when its 2xx answer was lost).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from serving.results_store import ResultsStore, aware

log = logging.getLogger("leadscore.serving")
SIGNATURE_HEADER = "X-Leadscore-Signature"


def check_url(url: str) -> str:
    """The webhook URL, if it is an absolute http(s) URL httpx can send to.

    Raises:
        ValueError: naming LEADSCORE_WEBHOOK_URL and what is wrong with it.
    """
    try:
        parsed = httpx.URL(url)
        port = parsed.port  # parsed lazily by some versions: a bad port shows here
    except Exception as exc:
        raise ValueError(f"LEADSCORE_WEBHOOK_URL {url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"LEADSCORE_WEBHOOK_URL {url!r} must be an absolute http:// or https:// URL")
    del port
    return url


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-Leadscore-Signature`` for ``body``: ``sha256=`` + hex HMAC-SHA256 (RFC 2104)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload_of(row: dict[str, Any]) -> bytes:
    """The JSON body for one hand-over row (keys sorted: the signed bytes are stable)."""
    return json.dumps(
        {
            "lead_id": row["lead_id"],
            "probability": row["probability"],
            "grade": row["grade"],
            "reasons": json.loads(row["reasons"]),
            "handed_over_at": aware(row["handed_over_at"]).isoformat(),
            "model_version": row["model_version"],
            "threshold_version": row["threshold_version"],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def idempotency_key(row: dict[str, Any]) -> str:
    return f"leadscore-hand-over-{row['id']}-{hashlib.sha256(row['lead_id'].encode()).hexdigest()[:16]}"


class WebhookSender:
    """Deliver hand-overs from the outbox on a background thread (see the module docstring)."""

    def __init__(
        self,
        store: ResultsStore,
        url: str,
        secret: str,
        timeout_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        first_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 3600.0,
        lease_seconds: float | None = None,
        on_result: Callable[[str], None] = lambda result: None,
        on_pending: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.store, self.url, self.secret = store, url, secret
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.first_backoff_seconds = first_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # how long a claimed hand-over is kept from the other senders: well over one POST
        self.lease = timedelta(seconds=lease_seconds if lease_seconds is not None else timeout_seconds * 3 + 30)
        self.on_result, self.on_pending = on_result, on_pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadscore-webhook", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def backoff(self, attempts: int) -> timedelta:
        """Wait before the next attempt after ``attempts`` failed ones: doubling, at most the maximum."""
        return timedelta(seconds=min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** min(attempts - 1, 30)))

    def deliver_due(self, client: httpx.Client, limit: int = 1000) -> int:
        """Send each hand-over due at the start of the pass once (up to ``limit``, for at most a third of a
        lease), each claimed just before it is sent, so that no claim's lease runs out while its POST is under
        way; returns how many were delivered."""
        lease = self.lease
        start = datetime.now(UTC)  # due by the start of the pass: one failed now waits for its back-off
        stop = time.monotonic() + lease.total_seconds() / 3  # each claim's lease runs from the start
        delivered = 0
        for _ in range(limit):
            if time.monotonic() > stop or self._stop.is_set():  # a shutdown waits for one POST at most
                break
            claimed = self.store.claim_due_hand_overs(start, lease, limit=1)
            if not claimed:
                break
            row = claimed[0]
            body = payload_of(row)
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self.secret, body),
                "Idempotency-Key": idempotency_key(row),
            }
            error = None
            try:
                answer = client.post(self.url, content=body, headers=headers, timeout=self.timeout_seconds)
                if not 200 <= answer.status_code < 300:
                    error = f"HTTP {answer.status_code}"
            except Exception as exc:  # any failure to deliver (unreachable, timeout, a URL httpx refuses) is retried
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                self.store.mark_delivered(row["id"], datetime.now(UTC))
                delivered += 1
                self.on_result("delivered")
            else:
                attempts = int(row["attempts"]) + 1
                self.store.mark_failed(row["id"], error, datetime.now(UTC) + self.backoff(attempts))
                self.on_result("failed")
                log.warning(
                    "webhook: hand-over of lead %r not delivered (attempt %d): %s", row["lead_id"], attempts, error
                )
        return delivered

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                try:
                    self.deliver_due(client)
                    self.on_pending(self.store.undelivered())
                except Exception:  # never let the sender die; the outbox keeps everything
                    log.exception("webhook: sending failed")
                self._stop.wait(self.poll_seconds)
