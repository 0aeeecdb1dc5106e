"""The event cache on its own, and the store reading ids from PostgreSQL and JSON from it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest

from relay.nostr.event import decode_event
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.storage.eventcache import ENTRY_OVERHEAD, EventCache
from relay.storage.migrate import Conn
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.signer import Keys


def _size(raw: str) -> int:
    return sys.getsizeof(raw) + ENTRY_OVERHEAD


def test_the_entry_put_in_longest_ago_goes_first() -> None:
    cache = EventCache(3 * _size("{}"))
    for name in (b"a", b"b", b"c"):
        cache.put(name, "{}")
    assert cache.lookup([b"a", b"x", b"c"]) == ["{}", None, "{}"]
    assert (cache.hits, cache.misses) == (2, 1)
    cache.put(b"d", "{}")
    assert [name in cache for name in (b"a", b"b", b"c", b"d")] == [False, True, True, True]
    cache.put(b"a", "{}")  # read again after it went: back in as the newest
    assert [name in cache for name in (b"a", b"b", b"c", b"d")] == [True, False, True, True]
    assert cache.evictions == 2


def test_the_bound_counts_each_strings_memory_and_the_overhead() -> None:
    ascii_text, wide = "a" * 100, "\U0001f3cb" * 100  # a weight lifter: four bytes a character
    assert _size(wide) > _size(ascii_text) + 300
    cache = EventCache(_size(ascii_text) + _size(wide))
    cache.put(b"x", ascii_text)
    cache.put(b"x", ascii_text)  # the same event again: counted once
    assert (len(cache), cache.bytes) == (1, _size(ascii_text))
    cache.put(b"big", "b" * cache.max_bytes)  # larger than the whole bound: not held
    assert b"big" not in cache
    assert (len(cache), cache.evictions) == (1, 0)
    cache.put(b"y", wide)  # exactly fills the bound
    assert (len(cache), cache.bytes) == (2, cache.max_bytes)
    cache.put(b"z", "")
    assert b"x" not in cache
    assert cache.bytes <= cache.max_bytes


def test_a_bound_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError):
        EventCache(0)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[object]:
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def _signed(*events: dict[str, object]) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    raws = [msgspec.json.encode(e) for e in events]
    return [decode_event(r) for r in raws], [r.decode() for r in raws]


LIMITS = Limits()


async def test_events_stored_here_are_answered_from_memory(pool: object) -> None:
    cache = EventCache(1 << 20)
    store = Store(pool, default_limit=100, events=cache)  # type: ignore[arg-type]
    alice = Keys(11)
    notes = [alice.sign(1, f"note {i}", created_at=100 + i) for i in range(3)]
    v2 = alice.sign(33401, "v2", [["d", "squat"]], created_at=20)
    v1 = alice.sign(33401, "v1", [["d", "squat"]], created_at=10)
    events, raws = _signed(*notes, v2, v1)
    statuses = await store.ingest(events, raws)
    assert statuses[-1] is IngestStatus.SUPERSEDED
    assert bytes.fromhex(v1["id"]) not in cache  # never stored, so never held
    answer = await store.query([parse_filter({"authors": [alice.pubkey]}, LIMITS)], 0)
    assert [raw for _id, raw in answer] == [raws[2], raws[1], raws[0], raws[3]]
    assert (cache.hits, cache.misses) == (4, 0)


async def test_events_not_held_are_read_by_id_and_kept(pool: object) -> None:
    bob = Keys(12)
    events, raws = _signed(*(bob.sign(1, f"n{i}", created_at=200 + i) for i in range(4)))
    await Store(pool, default_limit=100).ingest(events, raws)  # type: ignore[arg-type]
    cache = EventCache(1 << 20)
    store = Store(pool, default_limit=100, events=cache)  # type: ignore[arg-type]
    flt = [parse_filter({"authors": [bob.pubkey], "limit": 3}, LIMITS)]
    first = await store.query(flt, 0)
    assert [raw for _id, raw in first] == raws[:0:-1]
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
    assert await store.query(flt, 0) == first
    assert cache.hits == 3


async def test_an_event_removed_between_the_two_statements(
    pool: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids query finds the newest note, which is deleted before its JSON is read: the
    answer is the one the store holds then (the next older note fills the limit), not a
    short one."""
    carol = Keys(13)
    events, raws = _signed(*(carol.sign(1, f"n{i}", created_at=300 + i) for i in range(3)))
    await Store(pool, default_limit=100).ingest(events, raws)  # type: ignore[arg-type]
    newest = bytes.fromhex(events[2].id)
    read_json = Store._page

    async def removed_first(
        self: Store, conn: Conn | None, rows: Sequence[Any]
    ) -> list[tuple[bytes, str]]:
        assert conn is not None and newest in [row[1] for row in rows]
        await conn.execute("DELETE FROM events WHERE id = $1", newest)
        return await read_json(self, conn, rows)

    monkeypatch.setattr(Store, "_page", removed_first)
    store = Store(pool, default_limit=100, events=EventCache(1 << 20))  # type: ignore[arg-type]
    answer = await store.query([parse_filter({"authors": [carol.pubkey], "limit": 2}, LIMITS)], 0)
    assert [raw for _id, raw in answer] == [raws[1], raws[0]]
