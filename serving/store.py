"""The key store (and, later, the threshold store) through SQLAlchemy: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

ROLES = ("crm", "marketing", "sales", "admin")
KEY_PREFIX = "lsk_"

metadata = MetaData()
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("owner", String(320), nullable=True),  # the person the key belongs to (e-mail); None on keys made before
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and WAL mode for concurrent readers."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    import serving.results_store
    import serving.thresholds  # noqa: F401  (registers the threshold tables on the shared metadata)

    # Workers starting together race to create each table (or add each column): the loser looks again, and
    # can lose at most once per table, after which the table exists.
    attempts = len(metadata.tables) + 1
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            add_missing_columns(engine)
            add_missing_indexes(engine)
            break
        except DBAPIError:
            if attempt == attempts - 1:
                raise
    return engine


RETIRED_INDEXES = ("hand_overs_undelivered",)  # replaced by the partial index hand_overs_outbox


def add_missing_indexes(engine: Engine) -> list[str]:
    """Create the indexes a store made by an older Leadscore lacks, and drop the ones retired since.
    Returns the names created."""
    made = []
    present = {i["name"] for table in metadata.sorted_tables for i in inspect(engine).get_indexes(table.name)}
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if index.name in present:
                continue
            try:
                index.create(engine, checkfirst=True)
                made.append(str(index.name))
            except DBAPIError:  # another process made it at the same moment
                continue
    with engine.begin() as conn:
        for name in RETIRED_INDEXES:
            if name in present:
                conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    return made


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the nullable columns a store made by an older Leadscore lacks (``create_all`` only makes tables).

    Returns the ``table.column`` names added. Only nullable columns are ever added, so old rows stay valid.
    """
    added = []
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"the store's table {table.name} lacks the required column {column.name}")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
            except DBAPIError:  # another process (a second worker) added it at the same moment
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
    return added


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, role and owner, the person it belongs to (never the key itself).

    ``owner`` is None only for keys made before keys had owners; such keys may not propose or decide.
    """

    key_id: int
    name: str
    role: str
    owner: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    name: str
    role: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None
    owner: str | None = None


class InvalidKey(ValueError):
    """A key cannot be made as asked (the message says which option is wrong)."""


class UnknownRole(InvalidKey):
    pass


class InvalidOwner(InvalidKey):
    pass


MAX_NAME = 200


OWNER_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def normalise_owner(owner: str) -> str:
    """The owner as stored: an e-mail address, trimmed, NFKC-normalised and case-folded, so that one person
    has one spelling (``José`` typed composed or decomposed is one owner). Invisible characters (zero-width
    spaces, direction marks: Unicode categories C*) are refused, not removed. Plus-addressing
    (``mia+sales@``) names another mailbox and so another owner: give people's own addresses.

    Raises:
        InvalidOwner: when ``owner`` is not an e-mail address.
    """
    cleaned = unicodedata.normalize("NFKC", owner.strip()).casefold()
    invisible = [c for c in cleaned if unicodedata.category(c).startswith("C")]
    if invisible:
        raise InvalidOwner(
            f"the owner {owner!r} contains invisible characters ({', '.join(f'U+{ord(c):04X}' for c in invisible)})"
        )
    if not OWNER_PATTERN.fullmatch(cleaned) or len(cleaned) > 320:
        raise InvalidOwner(f"the owner must be the e-mail address of the person the key belongs to (got {owner!r})")
    return cleaned


class KeyStore:
    """API keys: only a SHA-256 hash is stored; answers are cached for a few seconds (unknown keys for fewer),
    in a least-recently-used cache of ``max_cached`` keys, so that a flood of unknown keys neither evicts the
    busy keys nor reaches the database more than once a key per ``negative_seconds``."""

    def __init__(
        self, engine: Engine, cache_seconds: float = 5.0, negative_seconds: float = 2.0, max_cached: int = 10_000
    ) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.negative_seconds = negative_seconds
        self.max_cached = max_cached
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, role: str, name: str | None = None, *, owner: str) -> tuple[str, KeyInfo]:
        """A new random key for ``role`` belonging to the person ``owner`` (an e-mail address); returns the key
        (shown once) and its record.

        Raises:
            UnknownRole: ``role`` is not one of ROLES.
            InvalidOwner: ``owner`` is not an e-mail address.
            InvalidKey: ``name`` is empty or longer than MAX_NAME.
        """
        if role not in ROLES:
            raise UnknownRole(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        owner = normalise_owner(owner)
        if name is not None and not 0 < len(name) <= MAX_NAME:
            raise InvalidKey(f"a key's name has 1 to {MAX_NAME} characters (got {len(name)})")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        name = name or f"{role}-{now:%Y%m%d%H%M%S}"
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(api_keys).values(
                    name=name, role=role, owner=owner, key_hash=hash_key(key), key_hint=key[:8], created_at=now
                )
            )
            key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return key, KeyInfo(key_id, name, role, key[:8], now, None, owner)

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).all()
        return [KeyInfo(r.id, r.name, r.role, r.key_hint, r.created_at, r.revoked_at, r.owner) for r in rows]

    def revoke(self, key_id_or_name: str) -> int:
        """Revoke by id or name; returns how many keys were revoked."""
        cond = api_keys.c.name == key_id_or_name
        if key_id_or_name.isdigit():
            cond = cond | (api_keys.c.id == int(key_id_or_name))
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_keys).where(cond & api_keys.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
            )
        with self._lock:
            self._cache.clear()
        return int(result.rowcount or 0)

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """(whether the cache knows the key, its principal) without touching the database; an unknown or
        revoked key's None is remembered for ``negative_seconds``."""
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is None:
                return False, None
            self._cache.move_to_end(digest)
        when, principal = hit
        ttl = self.cache_seconds if principal is not None else min(self.cache_seconds, self.negative_seconds)
        return (True, principal) if now - when < ttl else (False, None)

    def authenticate(self, key: str) -> Principal | None:
        """The principal for a presented key, or None (unknown or revoked); looks in the database when the
        cache cannot tell (blocking: call it from a worker thread in async code)."""
        known, principal = self.cached(key)
        if known:
            return principal
        digest = hash_key(key)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys).where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
            ).first()
        principal = None
        if row is not None and hmac.compare_digest(row.key_hash, digest):
            principal = Principal(row.id, row.name, row.role, row.owner)
        with self._lock:
            self._cache[digest] = (time.monotonic(), principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.max_cached:  # least recently used first: busy keys stay cached
                self._cache.popitem(last=False)
        return principal
