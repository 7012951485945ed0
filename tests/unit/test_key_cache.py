"""The API-key cache: a flood of unknown keys neither evicts the busy keys nor reaches the database more
than once a key per few seconds; the look-ups that do reach it run off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import event

from serving.deps import _authenticate
from serving.store import KeyStore, make_engine


def store_counting_queries(tmp_path: Path, **options: float) -> tuple[KeyStore, list[str]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    store = KeyStore(engine, **options)  # type: ignore[arg-type]
    queries: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(threading.current_thread().name))
    return store, queries


def test_a_flood_of_unknown_keys_keeps_the_busy_key_cached_and_the_cache_bounded(tmp_path: Path) -> None:
    store, queries = store_counting_queries(tmp_path, max_cached=100)
    key, info = store.create("crm", "sam@example.com", owner="sam@example.com")
    assert store.authenticate(key) is not None
    for i in range(1000):
        assert store.authenticate(f"lsk_unknown_{i}") is None
        if i % 50 == 0:
            queries.clear()
            assert store.authenticate(key).name == info.name  # type: ignore[union-attr]
            assert queries == []  # still cached: the busy key was used recently
    assert len(store._cache) <= 100


def test_an_unknown_key_reaches_the_database_once_within_its_negative_time(tmp_path: Path) -> None:
    store, queries = store_counting_queries(tmp_path, negative_seconds=60.0)
    store.create("crm", owner="crm@example.com")
    queries.clear()
    for _ in range(20):
        assert store.authenticate("lsk_not_a_key") is None
    assert len(queries) == 1


def test_a_key_the_cache_cannot_tell_is_looked_up_off_the_event_loop(tmp_path: Path) -> None:
    store, queries = store_counting_queries(tmp_path)
    key, _ = store.create("sales", owner="sales@example.com")
    queries.clear()

    async def call() -> str:
        principal = await _authenticate(store, key)
        return principal.role

    assert asyncio.run(call()) == "sales"
    assert queries and all(name != threading.current_thread().name for name in queries)
    queries.clear()
    assert asyncio.run(call()) == "sales" and queries == []  # now from the cache, on the loop
