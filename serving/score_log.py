"""The score log's writer: scores are queued on the request path (a list append) and written by one
background thread in batches, so that answering never waits for the database."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from models.scoring_model import ScoringModel
from serving.drift_store import DriftCounter, DriftStore, Key
from serving.results_store import ResultsStore, ScoreRecord
from serving.schemas import LeadIn, ScoreOut

log = logging.getLogger("leadscore.serving")
# What one call queues: its records, and for the drift counts its day, feature rows, leads' attributes and model.
# Plain records, not the request's objects: a queue holding thousands of parsed leads (30 touch objects each)
# until the next write made the garbage collector walk them again and again, on the request path.
Pending = tuple[list[ScoreRecord], datetime, "np.ndarray | None", "list[dict[str, Any]]", "ScoringModel | None"]
PRUNE_EVERY_SECONDS = 3600.0
# The drift counts (a few hundred day x column x bin upserts) are written this often by the writer's loop (by
# default), not at every write of the log: drift is read over days, and each upsert costs the same however many
# answers it counts. flush() and close() write them at once.
DRIFT_EVERY_SECONDS = 10.0


def lead_source_of(lead: LeadIn) -> str | None:
    """The lead's ``lead_source`` attribute as text (None when absent or empty)."""
    value = lead.attributes.get("lead_source")
    if value is None:
        return None
    text = str(value).strip()
    return text[:200] or None


def campaign_of(lead: LeadIn, as_of: datetime) -> str | None:
    """The lead's first-touch campaign: the campaign of its earliest touch (up to ``as_of``) that names one."""
    first: tuple[datetime, str] | None = None
    for touch in lead.touchpoints:
        if touch.campaign and touch.campaign.strip():
            at = touch.occurred_at if touch.occurred_at.tzinfo else touch.occurred_at.replace(tzinfo=UTC)
            if at <= as_of and (first is None or at < first[0]):
                first = (at, touch.campaign.strip()[:200])
    return first[1] if first else None


def record_of(lead: LeadIn, result: ScoreOut, scored_at: datetime, source: str, details: bool = True) -> ScoreRecord:
    """What the log keeps of one answer (times in UTC; as_of defaults to the moment scored). ``details``:
    with the lead's source and first-touch campaign and, for a qualified answer, the reasons (needed for a
    lead's first score and its hand-over only)."""
    as_of = lead.as_of or scored_at
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    created = lead.created_at if lead.created_at.tzinfo else lead.created_at.replace(tzinfo=UTC)
    qualified = result.qualified
    extra = (
        (
            lead_source_of(lead),
            campaign_of(lead, as_of) if lead.touchpoints else None,
            tuple({"feature": r.feature, "description": r.description, "impact": r.impact} for r in result.reasons)
            if qualified
            else (),
        )
        if details
        else ()
    )
    return ScoreRecord(
        result.lead_id,
        scored_at,
        as_of,
        created,
        result.model_version,
        result.threshold_version,
        result.probability,
        result.grade,
        qualified,
        source,
        *extra,
    )


class ScoreLog:
    """Queue answers for the score log and write them in batches from one thread.

    ``add`` makes the records on the request path (a few microseconds per answer: the queue holds plain
    records, not the request's objects) and appends them to a deque. The writer wakes every ``flush_seconds`` (or
    as soon as ``batch_size`` answers wait) and appends what waits in one transaction; a failed write is kept
    and retried at the next wake. More than ``max_pending`` answers waiting (the database is down for a long
    time) are dropped, counted by ``on_dropped``, and logged: never silently. The drift counts are kept in
    memory and written every ``drift_every_seconds``. ``close`` writes what is left. ``notify``: the
    hand-overs found are for the webhook to send.
    """

    def __init__(
        self,
        store: ResultsStore,
        retention: timedelta,
        flush_seconds: float = 0.5,
        batch_size: int = 5000,
        max_pending: int = 200_000,
        on_written: Callable[[int, int], None] = lambda rows, handed: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        on_failed: Callable[[], None] = lambda: None,
        notify: bool = False,
        drift: DriftStore | None = None,
        drift_every_seconds: float = DRIFT_EVERY_SECONDS,
    ) -> None:
        self.store = store
        self.notify = notify  # hand-overs are for the webhook
        self.drift = drift  # where the drift counts of the answers go (None: not counted)
        self._counter = DriftCounter()
        self._drift_waiting: Counter[Key] = Counter()
        self.retention = retention
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.on_written, self.on_dropped, self.on_failed = on_written, on_dropped, on_failed
        self._pending: deque[Pending] = deque()
        self._count = 0  # answers pending (approximate across threads; only bounds memory)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self._last_drift = time.monotonic()
        self.drift_every_seconds = drift_every_seconds
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadscore-score-log", daemon=True)
        self._thread.start()

    def add(
        self,
        leads: Sequence[LeadIn],
        results: Sequence[ScoreOut],
        scored_at: datetime,
        source: str,
        features: np.ndarray | None = None,
        model: ScoringModel | None = None,
    ) -> None:
        """Queue the answers to ``leads`` (same order) for the log (called on the request path: the records are
        made here, a few microseconds each), with the feature rows they were computed from and the model, for
        the drift counts."""
        n = len(results)
        if self._count + n > self.max_pending:
            self.dropped += n
            self.on_dropped(n)
            log.warning(
                "score log: %d answers dropped, %d waiting to be written (is the database down?)", n, self._count
            )
            return
        details = self.store.needs_details
        records = [
            record_of(lead, result, scored_at, source, details(result.lead_id, result.qualified))
            for lead, result in zip(leads, results, strict=True)
        ]
        counted = features is not None and model is not None and self.drift is not None
        attributes = [lead.attributes for lead in leads] if counted else []
        self._pending.append((records, scored_at, features if counted else None, attributes, model))
        self._count += n
        if self._count >= self.batch_size:
            self._wake.set()

    def flush(self, drift: bool = True) -> int:
        """Write what is queued now (blocking), in transactions of about ``batch_size`` rows, so that the
        store's write lock is never held long (other writers wait at most one of them); returns the rows
        written. ``drift``: write the drift counts too (else they are kept, counted, for a later flush)."""
        calls = len(self._pending)  # what is queued now (answers arriving meanwhile wait for the next flush)
        written = 0
        while calls > 0:
            taken: list[Pending] = []
            size = 0
            while calls > 0 and size < self.batch_size:
                taken.append(self._pending.popleft())
                size += len(taken[-1][0])
                calls -= 1
            written += self._write(taken)
        if drift and self.drift is not None and self._drift_waiting:
            self.drift.add(self._drift_waiting)  # a failure keeps the counts for the next flush
            self._drift_waiting = Counter()
        return written

    def _write(self, taken: list[Pending]) -> int:
        """One transaction: the records of ``taken`` (kept at the head of the queue when the store is busy)."""
        records = [record for item in taken for record in item[0]]
        try:
            handed = self.store.append_scores(records, notify=self.notify)
        except OperationalError:  # the database is away or busy: everything is kept, in order, for the next try
            for item in reversed(taken):
                self._pending.appendleft(item)
            self.on_failed()
            raise
        except SQLAlchemyError:  # a row the database refuses: written one by one, the refused ones counted
            self.on_failed()
            handed = 0
            for record in records:
                try:
                    handed += self.store.append_scores([record], notify=self.notify)
                except SQLAlchemyError as err:
                    self.dropped += 1
                    self.on_dropped(1)
                    log.warning(
                        "score log: the answer for lead %r was refused by the database: %s", record.lead_id, err
                    )
        self._count = max(0, self._count - len(records))
        self.on_written(len(records), handed)
        if self.drift is not None:
            self._drift_waiting.update(self._drift_counts(taken))
        return len(records)

    def _drift_counts(self, taken: list[Pending]) -> Counter[Key]:
        """The drift counts of the answers taken, grouped by day and model (one vectorised count each)."""
        groups: dict[tuple[Any, str, int], list[Pending]] = {}
        models: dict[int, ScoringModel] = {}
        for item in taken:
            records, scored_at, features, _, model = item
            if features is None or model is None or not records:
                continue
            models[id(model)] = model
            groups.setdefault((scored_at.date(), records[0].model_version, id(model)), []).append(item)
        total: Counter[Key] = Counter()
        for (day, version, model_id), items in groups.items():
            ids = [r.lead_id for item in items for r in item[0]]
            attributes = [a for item in items for a in item[3]]
            probabilities = np.array([r.probability for item in items for r in item[0]])
            ages = np.array([(r.as_of - r.created_at).total_seconds() for item in items for r in item[0]])
            features = np.vstack([item[2] for item in items])  # type: ignore[misc]
            total.update(
                self._counter.count(day, version, models[model_id], ids, attributes, probabilities, features, ages)
            )
        return total

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("score log: the last answers could not be written")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                drift = time.monotonic() - self._last_drift >= self.drift_every_seconds
                self.flush(drift=drift)
                if drift:
                    self._last_drift = time.monotonic()
                if time.monotonic() - self._last_prune > PRUNE_EVERY_SECONDS:
                    self._last_prune = time.monotonic()
                    self.store.prune_scores(self.retention, datetime.now(UTC))
            except Exception:
                log.exception("score log: writing failed; retrying")
                self._stop.wait(min(5.0, max(self.flush_seconds, 0.1) * 4))


def first_touch_campaigns(touches: pd.DataFrame | None, as_of: datetime) -> pd.Series:
    """:func:`campaign_of` for a table of touches (lead_id, occurred_at, campaign): per lead id, the campaign
    of its earliest touch up to ``as_of`` that names one."""
    if touches is None or "campaign" not in touches.columns or touches.empty:
        return pd.Series(dtype=object)
    named = touches[["lead_id", "occurred_at", "campaign"]].dropna(subset=["campaign"])
    named = named.assign(campaign=named["campaign"].astype(str).str.strip().str[:200])
    named = named[(named["campaign"] != "") & (named["occurred_at"] <= pd.Timestamp(as_of))]
    first = named.sort_values(["occurred_at"], kind="stable").drop_duplicates("lead_id", keep="first")
    return first.set_index("lead_id")["campaign"]


def records_of_scores(
    scores: pd.DataFrame, leads: pd.DataFrame, touches: pd.DataFrame | None, scored_at: datetime, source: str
) -> list[ScoreRecord]:
    """What the log keeps of a scores table (``leadscore score``): the same fields as :func:`record_of`.

    Args:
        scores: lead_id, as_of, probability, grade, qualified, model_version, threshold_version, and
            optionally reasons (a JSON list per row).
        leads: lead_id, created_at and the attributes (``lead_source`` if present).
        touches: lead_id, occurred_at, campaign (or None).
    """
    as_of = pd.Timestamp(scores["as_of"].iloc[0]).to_pydatetime() if len(scores) else scored_at
    by_id = leads.set_index("lead_id")
    created = by_id.loc[scores["lead_id"], "created_at"].tolist()
    sources = (
        by_id.loc[scores["lead_id"], "lead_source"].tolist() if "lead_source" in by_id.columns else [None] * len(scores)
    )
    campaigns = scores["lead_id"].map(first_touch_campaigns(touches, as_of)).tolist()
    reasons = scores["reasons"].map(json.loads).tolist() if "reasons" in scores.columns else [[]] * len(scores)
    rows: list[dict[str, Any]] = scores.to_dict("records")  # type: ignore[assignment]
    out = []
    for i, row in enumerate(rows):
        source_value = sources[i]
        lead_source = None if pd.isna(source_value) else (str(source_value).strip()[:200] or None)
        campaign = campaigns[i]
        out.append(
            ScoreRecord(
                lead_id=str(row["lead_id"]),
                scored_at=scored_at,
                as_of=pd.Timestamp(row["as_of"]).to_pydatetime(),
                created_at=pd.Timestamp(created[i]).to_pydatetime(),
                model_version=str(row["model_version"]),
                threshold_version=int(row["threshold_version"]),
                probability=float(row["probability"]),
                grade=str(row["grade"]),
                qualified=bool(row["qualified"]),
                source=source,
                lead_source=lead_source,
                campaign=None if pd.isna(campaign) else str(campaign),
                reasons=tuple(reasons[i]),
            )
        )
    return out
