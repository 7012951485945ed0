"""What happened after scoring: the score log, hand-overs, outcomes and sales' verdicts (SQLAlchemy).

Tables (on the key store's database: SQLite under ``LEADSCORE_HOME`` by default, PostgreSQL by URL):

- ``score_log``: one row per score served (API, batch, ``leadscore score``); pruned after the retention.
- ``scored_leads``: one row per lead, its first score (kept when the log is pruned): what the calibration and
  the missed wins are counted over.
- ``hand_overs``: one row per lead, the first answer that said qualified; also the webhook's outbox.
- ``outcomes``: append-only; the same row twice is stored once, a correction is a new row, the latest counts.
- ``verdicts``: append-only verdicts of sales on handed-over leads, by the person whose key sent them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, get_args

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from serving.errors import Forbidden, InvalidLeadData
from serving.schemas import RejectionReason, VerdictName
from serving.store import Principal, metadata

if TYPE_CHECKING:
    from models.performance import PerformanceReport

MAX_ID = 200
MAX_NOTE = 2000
MAX_LISTED_UNKNOWN = 100

# How sales qualifies a lead (BANT: budget, authority, need, timing) and why a lead is not one at all.
REJECTION_REASONS: tuple[str, ...] = get_args(RejectionReason)
VERDICTS: tuple[str, ...] = get_args(VerdictName)

score_log = Table(
    "score_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(MAX_ID), nullable=False),  # no index: each one costs every insert (the log is hot)
    # times as integer microseconds since 1970-01-01 UTC: written without per-value conversion
    Column("scored_at", BigInteger, nullable=False, index=True),  # wall clock of the answer (pruning reads it)
    Column("as_of", BigInteger, nullable=False),  # the moment scored (default: scored_at)
    Column("created_at", BigInteger, nullable=False),  # the lead's
    Column("model_version", String(50), nullable=False),
    Column("threshold_version", Integer, nullable=False),
    Column("probability", Float, nullable=False),
    Column("grade", String(1), nullable=False),
    Column("qualified", Boolean, nullable=False),
    Column("source", String(10), nullable=False),  # api, batch, cli
)
scored_leads = Table(
    "scored_leads",
    metadata,
    Column("lead_id", String(MAX_ID), primary_key=True),
    Column("first_as_of", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("probability", Float, nullable=False),  # at the first score
    Column("model_version", String(50), nullable=False),
    Column("threshold_version", Integer, nullable=False),
    Column("lead_source", String(200), nullable=True),
    Column("campaign", String(200), nullable=True),
)
hand_overs = Table(
    "hand_overs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(MAX_ID), nullable=False, unique=True),
    Column("handed_over_at", DateTime(timezone=True), nullable=False),  # the as_of of the first qualified answer
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("probability", Float, nullable=False),
    Column("grade", String(1), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("threshold_version", Integer, nullable=False),
    Column("lead_source", String(200), nullable=True),
    Column("campaign", String(200), nullable=True),
    Column("reasons", Text, nullable=False),  # JSON list, as the answer gave them ([] when asked without reasons)
    # the webhook's outbox: hand-overs made while a webhook was configured (switching one on does not send the past)
    Column("notify", Boolean, nullable=False, default=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("last_error", String(500), nullable=True),
)
# The webhook's outbox: only the hand-overs still to send, in order (a partial index, so that finding the next
# one due, and counting them, reads the outbox and not every hand-over ever made). The queries that use it
# repeat its condition word for word (OUTBOX), as SQLite's planner requires.
OUTBOX = hand_overs.c.notify.is_(True) & hand_overs.c.delivered_at.is_(None)
Index("hand_overs_outbox", hand_overs.c.id, sqlite_where=OUTBOX, postgresql_where=OUTBOX)
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(MAX_ID), nullable=False, index=True),
    Column("outcome", String(4), nullable=False),  # won, lost
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("amount", Float, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source", String(200), nullable=False),  # api:<key name> or import:<file name>
    Column("row_key", String(64), nullable=False),  # lead, outcome, close time and amount: the same row twice
)
verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(MAX_ID), nullable=False, index=True),
    Column("verdict", String(10), nullable=False),
    Column("reason", String(20), nullable=True),
    Column("note", String(MAX_NOTE), nullable=True),
    Column("by_key", String(200), nullable=False),
    Column("owner", String(320), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


def aware(value: datetime) -> datetime:
    """A datetime read back from the store in UTC (SQLite gives it back naive)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime) -> datetime:
    """A datetime to store: naive means UTC (as in the scoring API)."""
    return aware(value)


class ScoreRecord(NamedTuple):
    """One score served, as the log keeps it (aware datetimes; a tuple: cheap to make by the thousand).

    ``lead_source``, ``campaign`` and ``reasons`` are kept with a lead's first score and its hand-over only
    (:meth:`ResultsStore.needs_details` says whether a record may be one): the log rows do not hold them.
    """

    lead_id: str
    scored_at: datetime
    as_of: datetime
    created_at: datetime
    model_version: str
    threshold_version: int
    probability: float
    grade: str
    qualified: bool
    source: str
    lead_source: str | None = None
    campaign: str | None = None
    reasons: tuple[dict[str, Any], ...] = ()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since 1970-01-01 UTC of an aware datetime (naive means UTC), exactly."""
    return ((value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - EPOCH) // MICROSECOND


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    lead_id: str
    outcome: str  # won, lost
    closed_at: datetime
    amount: float | None = None


@dataclass(frozen=True)
class OutcomesReceipt:
    """What a call (or an import) of outcomes did, per row received."""

    received: int
    recorded: int  # new rows stored
    unchanged: int  # rows equal to the lead's latest outcome (lead, outcome, close time and amount)
    corrections: int  # recorded rows that change a lead's latest outcome
    unknown_lead_ids: list[str]  # first MAX_LISTED_UNKNOWN ids never scored
    unknown_leads: int  # how many distinct ids were never scored
    superseded: int = 0  # rows followed, in the same call, by a different row of the same lead (not stored)


@dataclass(frozen=True)
class Verdict:
    id: int
    lead_id: str
    verdict: str
    reason: str | None
    note: str | None
    by_key: str
    owner: str
    at: datetime
    handed_over_at: datetime | None


def _row_key(row: OutcomeRow) -> str:
    amount = "" if row.amount is None else repr(float(row.amount))
    text = "\x1f".join((row.lead_id, row.outcome, aware(row.closed_at).isoformat(), amount))
    return hashlib.sha256(text.encode()).hexdigest()


def _insert_ignoring_duplicates(engine: Engine, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` on either backend (the unique key decides)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class ResultsStore:
    """Reads and writes the score log, hand-overs, outcomes and verdicts (blocking: use worker threads)."""

    def __init__(self, engine: Engine, remember: int = 200_000) -> None:
        self.engine = engine
        # leads whose first score / hand-over this process has stored: not sent again (bounded, oldest out)
        self._seen = _Recent(remember)
        self._handed = _Recent(remember)
        columns = [c.name for c in score_log.columns if c.name != "id"]
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._log_insert = (
            f"INSERT INTO {score_log.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
        )
        # A lead's first score, the same way (a new lead per answer is the common case of a CRM). Both
        # backends know ON CONFLICT DO NOTHING; times go through the column type's own bind processor
        # (SQLite: SQLAlchemy's text format, read back by select(); PostgreSQL: the datetime itself).
        firsts = [c.name for c in scored_leads.columns]
        self._first_insert = (
            f"INSERT INTO {scored_leads.name} ({', '.join(firsts)}) VALUES ({', '.join([marker] * len(firsts))}) "
            "ON CONFLICT DO NOTHING"
        )
        handed = [c.name for c in hand_overs.columns if c.name in HANDED_COLUMNS]
        assert len(handed) == len(HANDED_COLUMNS)
        self._handed_insert = (
            f"INSERT INTO {hand_overs.name} ({', '.join(HANDED_COLUMNS)}) "
            f"VALUES ({', '.join([marker] * len(HANDED_COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        self._bind_time = _time_binder(engine)

    # ---- the score log ---------------------------------------------------------------------------
    def append_scores(self, records: Sequence[ScoreRecord], notify: bool = False) -> int:
        """Append scores to the log in one transaction; record each lead's first score and its hand-over
        (the first answer that said qualified: later ones change nothing, across processes too); ``notify``:
        the hand-overs are for the webhook to send.

        Returns the number of leads handed over by these records.
        """
        if not records:
            return 0
        known: dict[datetime, int] = {}  # many records share a time (the answer's, an as_of defaulting to it)

        def us(moment: datetime) -> int:
            value = known.get(moment)
            if value is None:
                value = known[moment] = micros(moment)
            return value

        records = [_storable(r) for r in records]
        log_rows = [(r.lead_id, us(r.scored_at), us(r.as_of), us(r.created_at), *r[4:10]) for r in records]
        firsts: dict[str, ScoreRecord] = {}
        handed: dict[str, ScoreRecord] = {}
        for r in records:
            if r.lead_id not in firsts and r.lead_id not in self._seen:
                firsts[r.lead_id] = r
            if r.qualified and r.lead_id not in handed and r.lead_id not in self._handed:
                handed[r.lead_id] = r
        new = 0
        with self.engine.begin() as conn:
            # one prepared INSERT, rows as plain tuples: no per-value processing by SQLAlchemy
            conn.exec_driver_sql(self._log_insert, log_rows)
            bind, bound = (
                self._bind_time,
                dict[datetime, Any](),
            )  # times repeat (an answer's as_of, a lead's creation): formatted once

            def t(moment: datetime) -> Any:
                value = bound.get(moment)
                if value is None:
                    value = bound[moment] = bind(aware(moment))
                return value

            if firsts:
                conn.exec_driver_sql(
                    self._first_insert,
                    [
                        (
                            r.lead_id,
                            t(r.as_of),
                            t(r.created_at),
                            r.probability,
                            r.model_version,
                            r.threshold_version,
                            r.lead_source,
                            r.campaign,
                        )
                        for r in firsts.values()
                    ],
                )
            if handed:
                # the unique key keeps the first hand-over (across processes); the rows inserted are counted
                # by the driver (sqlite3 and psycopg sum an executemany's rowcount over its rows)
                new = conn.exec_driver_sql(
                    self._handed_insert,
                    [
                        (
                            r.lead_id,
                            t(r.as_of),
                            t(r.created_at),
                            r.probability,
                            r.grade,
                            r.model_version,
                            r.threshold_version,
                            r.lead_source,
                            r.campaign,
                            json.dumps(list(r.reasons)) if r.reasons else "[]",
                            notify,
                            0,
                        )
                        for r in handed.values()
                    ],
                ).rowcount
        self._seen.update(firsts)  # after the commit: only what is stored is skipped next time
        self._handed.update(handed)
        return new

    def needs_details(self, lead_id: str, qualified: bool) -> bool:
        """Whether a score of this lead may be its first or its hand-over, as far as this process knows (when
        not, its record may leave out lead_source, campaign and reasons)."""
        return lead_id not in self._seen or (qualified and lead_id not in self._handed)

    def prune_scores(self, retention: timedelta, now: datetime | None = None) -> int:
        """Delete log rows scored more than ``retention`` ago; first scores and hand-overs are kept."""
        cut = micros((now or datetime.now(UTC)) - retention)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(score_log).where(score_log.c.scored_at < cut)).rowcount or 0)

    def scores(self, lead_id: str | None = None) -> pd.DataFrame:
        """The log's rows (of one lead), in the order written."""
        query = select(score_log).order_by(score_log.c.id)
        if lead_id is not None:
            query = query.where(score_log.c.lead_id == lead_id)
        frame = self._frame(query, ())
        for column in ("scored_at", "as_of", "created_at"):
            frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="us", utc=True)
        return frame

    def hand_over_of(self, lead_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(hand_overs).where(hand_overs.c.lead_id == lead_id)).mappings().first()
        return dict(row) if row else None

    # ---- outcomes -------------------------------------------------------------------------------
    def add_outcomes(self, rows: Sequence[OutcomeRow], source: str, now: datetime | None = None) -> OutcomesReceipt:
        """Store outcomes, in the order given: a row equal to the lead's latest outcome changes nothing (the same
        row twice is stored once); any other row for a lead already known (a lost lead later won, a corrected
        close date, or back to an earlier outcome) is kept as a new row, a correction, and the latest counts.
        Within one call only each lead's last row counts: earlier, different rows of the same lead are
        superseded (counted, not stored), so that sending the same call again changes nothing.

        Raises:
            InvalidLeadData: a lead id is empty or longer than MAX_ID, an outcome is neither won nor lost, an
                amount is negative or not finite (the field is named by its row).
        """
        problems: list[tuple[list[str | int], str]] = []
        for i, r in enumerate(rows):
            if not 0 < len(r.lead_id) <= MAX_ID:
                problems.append((["body", "outcomes", i, "lead_id"], f"a lead id has 1 to {MAX_ID} characters"))
            if r.outcome not in ("won", "lost"):
                problems.append((["body", "outcomes", i, "outcome"], "an outcome is 'won' or 'lost'"))
            if r.amount is not None and not (math.isfinite(r.amount) and r.amount >= 0):
                problems.append((["body", "outcomes", i, "amount"], "an amount is a finite number, 0 or more"))
        if problems:
            raise InvalidLeadData.listing(problems)
        received = now or datetime.now(UTC)
        ids = sorted({r.lead_id for r in rows})
        with self.engine.begin() as conn:
            latest: dict[str, str] = {}  # lead -> the row key of its latest outcome
            for chunk in _chunks(ids, 500):
                newest = (
                    select(func.max(outcomes.c.id).label("id"))
                    .where(outcomes.c.lead_id.in_(chunk))
                    .group_by(outcomes.c.lead_id)
                    .subquery()
                )
                query = select(outcomes.c.lead_id, outcomes.c.row_key).join(newest, outcomes.c.id == newest.c.id)
                latest.update({lead_id: key for lead_id, key in conn.execute(query)})
            scored = set()
            for chunk in _chunks(ids, 500):
                scored |= set(
                    conn.execute(select(scored_leads.c.lead_id).where(scored_leads.c.lead_id.in_(chunk))).scalars()
                )
            keys = [_row_key(r) for r in rows]
            final = {r.lead_id: k for r, k in zip(rows, keys, strict=True)}  # each lead's last row in this call
            new, corrections, superseded = [], 0, 0
            for r, key in zip(rows, keys, strict=True):  # a row equal to the lead's latest changes nothing
                if key != final[r.lead_id]:  # a later row of this call says otherwise: resending is idempotent
                    superseded += 1
                    continue
                if latest.get(r.lead_id) == key:
                    continue
                corrections += r.lead_id in latest
                latest[r.lead_id] = key
                new.append(
                    {
                        "lead_id": r.lead_id,
                        "outcome": r.outcome,
                        "closed_at": utc(r.closed_at),
                        "amount": r.amount,
                        "received_at": received,
                        "source": source[:200],
                        "row_key": key,
                    }
                )
            if new:
                conn.execute(insert(outcomes), new)
        unknown = [i for i in ids if i not in scored]
        return OutcomesReceipt(
            received=len(rows),
            recorded=len(new),
            unchanged=len(rows) - len(new) - superseded,
            corrections=corrections,
            unknown_lead_ids=unknown[:MAX_LISTED_UNKNOWN],
            unknown_leads=len(unknown),
            superseded=superseded,
        )

    def latest_outcomes(self) -> pd.DataFrame:
        """Each lead's latest outcome received: lead_id, outcome, closed_at, amount."""
        newest = select(func.max(outcomes.c.id).label("id")).group_by(outcomes.c.lead_id).subquery()
        query = select(outcomes.c.lead_id, outcomes.c.outcome, outcomes.c.closed_at, outcomes.c.amount).join(
            newest, outcomes.c.id == newest.c.id
        )
        return self._frame(query, ("closed_at",))

    # ---- verdicts -------------------------------------------------------------------------------
    def add_verdict(self, who: Principal, lead_id: str, verdict: str, reason: str | None, note: str | None) -> Verdict:
        """Append a salesperson's verdict on a lead.

        Raises:
            Forbidden: the key belongs to no person (made before keys had owners).
            InvalidLeadData: an unknown verdict or reason, a rejection without a reason, a reason on an
                acceptance, "other" without a note, a note over MAX_NOTE characters or with control characters.
        """
        if who.owner is None:
            raise Forbidden(
                "this key belongs to no person; make one with `leadscore keys create --role ROLE --owner EMAIL`"
            )
        problems: list[tuple[list[str | int], str]] = []
        if verdict not in VERDICTS:
            problems.append((["body", "verdict"], f"a verdict is one of {', '.join(VERDICTS)}"))
        if reason is not None and reason not in REJECTION_REASONS:
            problems.append((["body", "reason"], f"a reason is one of {', '.join(REJECTION_REASONS)}"))
        if verdict == "rejected" and reason is None:
            problems.append((["body", "reason"], "a rejection needs a reason (marketing learns from it)"))
        if verdict == "accepted" and reason is not None:
            problems.append((["body", "reason"], "an acceptance takes no reason"))
        if reason == "other" and not (note and note.strip()):
            problems.append((["body", "note"], "the reason 'other' needs a note saying what it is"))
        if note is not None and (len(note) > MAX_NOTE or any(ord(c) < 32 and c not in "\n\t" for c in note)):
            problems.append((["body", "note"], f"a note has at most {MAX_NOTE} characters and no control characters"))
        if problems:
            raise InvalidLeadData.listing(problems)
        at = datetime.now(UTC)
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(verdicts).values(
                    lead_id=lead_id, verdict=verdict, reason=reason, note=note, by_key=who.name, owner=who.owner, at=at
                )
            )
            handed = conn.execute(
                select(hand_overs.c.handed_over_at).where(hand_overs.c.lead_id == lead_id)
            ).scalar_one_or_none()
        return Verdict(
            int(result.inserted_primary_key[0]),  # type: ignore[index]
            lead_id,
            verdict,
            reason,
            note,
            who.name,
            who.owner,
            at,
            aware(handed) if handed else None,
        )

    def latest_verdicts(self) -> pd.DataFrame:
        """Each lead's latest verdict: lead_id, verdict, reason, owner, at."""
        newest = select(func.max(verdicts.c.id).label("id")).group_by(verdicts.c.lead_id).subquery()
        query = select(verdicts.c.lead_id, verdicts.c.verdict, verdicts.c.reason, verdicts.c.owner, verdicts.c.at).join(
            newest, verdicts.c.id == newest.c.id
        )
        return self._frame(query, ("at",))

    # ---- what the performance report reads ----------------------------------------------------------
    def hand_overs(self) -> pd.DataFrame:
        cols = [c for c in hand_overs.c if c.name not in ("notify", "delivered_at", "next_attempt_at", "claimed_until")]
        return self._frame(select(*cols).order_by(hand_overs.c.id), ("handed_over_at", "created_at"))

    def scored_leads(self) -> pd.DataFrame:
        return self._frame(select(scored_leads), ("first_as_of", "created_at"))

    def performance(
        self, *, horizon_days: int, start: datetime, end: datetime, as_of: datetime, by: str
    ) -> PerformanceReport:
        """:func:`models.performance.performance` over what this store holds (raises its ValueError)."""
        from models.performance import performance

        return performance(
            self.hand_overs(),
            self.scored_leads(),
            self.latest_outcomes(),
            self.latest_verdicts(),
            horizon_days=horizon_days,
            start=start,
            end=end,
            as_of=as_of,
            by=by,
        )

    # ---- the webhook's outbox ---------------------------------------------------------------------
    def claim_due_hand_overs(self, now: datetime, lease: timedelta, limit: int = 50) -> list[dict[str, Any]]:
        """Hand-overs not yet delivered whose next attempt is due, each claimed for ``lease`` so that no other
        process sends it meanwhile (a crashed sender's claim runs out and the hand-over is sent again: at
        least once)."""
        due = (
            OUTBOX
            & or_(hand_overs.c.next_attempt_at.is_(None), hand_overs.c.next_attempt_at <= now)
            & or_(hand_overs.c.claimed_until.is_(None), hand_overs.c.claimed_until < now)
        )
        claimed = []
        with self.engine.connect() as conn:
            ids = (
                conn.execute(select(hand_overs.c.id).where(due).order_by(hand_overs.c.id).limit(limit)).scalars().all()
            )
        for hid in ids:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(hand_overs).where(due & (hand_overs.c.id == hid)).values(claimed_until=now + lease)
                )
                if result.rowcount == 1:
                    row = conn.execute(select(hand_overs).where(hand_overs.c.id == hid)).mappings().one()
                    claimed.append(dict(row))
        return claimed

    def mark_delivered(self, hand_over_id: int, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(hand_overs)
                .where(hand_overs.c.id == hand_over_id)
                .values(delivered_at=now, attempts=hand_overs.c.attempts + 1, claimed_until=None, last_error=None)
            )

    def mark_failed(self, hand_over_id: int, error: str, next_attempt_at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(hand_overs)
                .where(hand_overs.c.id == hand_over_id)
                .values(
                    attempts=hand_overs.c.attempts + 1,
                    next_attempt_at=next_attempt_at,
                    claimed_until=None,
                    last_error=error[:500],
                )
            )

    def undelivered(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(hand_overs).where(OUTBOX)).scalar_one())

    # ---- helpers ------------------------------------------------------------------------------------
    def _frame(self, query: Any, time_columns: Iterable[str]) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        for column in time_columns:
            frame[column] = (
                pd.to_datetime(frame[column], utc=True) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
            )
        return frame


def _text(value: str | None) -> str | None:
    """Text as every backend stores it: PostgreSQL refuses NUL characters, so they become U+FFFD."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


HANDED_COLUMNS = (
    "lead_id",
    "handed_over_at",
    "created_at",
    "probability",
    "grade",
    "model_version",
    "threshold_version",
    "lead_source",
    "campaign",
    "reasons",
    "notify",
    "attempts",
)


def _sqlite_time(value: datetime) -> str:
    """An aware UTC datetime as SQLAlchemy's SQLite DATETIME stores it ('YYYY-MM-DD HH:MM:SS.ffffff', UTC wall
    time), formatted in C: SQLAlchemy's own bind processor costs about 3 us per value."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_binder(engine: Engine) -> Callable[[datetime], Any]:
    """How a DateTime(timezone=True) value goes to the driver in a hand-written statement: on SQLite, the text
    SQLAlchemy writes and reads back; elsewhere the column type's bind processor, or the datetime itself."""
    if engine.dialect.name == "sqlite":
        return _sqlite_time
    bind = scored_leads.c.first_as_of.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    return bind if bind is not None else (lambda value: value)


def _storable(r: ScoreRecord) -> ScoreRecord:
    """The record with its texts storable (almost always the record itself: one scan of each text)."""
    if "\x00" in r.lead_id or (r.lead_source and "\x00" in r.lead_source) or (r.campaign and "\x00" in r.campaign):
        lead_id = r.lead_id.replace("\x00", "\ufffd")
        return r._replace(lead_id=lead_id, lead_source=_text(r.lead_source), campaign=_text(r.campaign))
    return r


class _Recent:
    """A bounded set of recent keys (insertion order; the oldest leave first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys[key] = None
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
