"""No stale answer is ever served: the query cache against a real PostgreSQL.

Hypothesis interleaves writes (new versions of replaceable and addressable events, deletions
by ``e`` and by ``a`` tag, deletions of versions that have not arrived yet, several events in
one batch, regular events) with REQ and COUNT requests through a :class:`CachedStore`. Writes
are committed with :meth:`Store.ingest` and then invalidated exactly as the writer does: every
event of the committed batch, whatever its status. After every request the cached answer must
equal a fresh answer of the uncached store, and a repeated request whose answer was kept must
be a hit. Some requests run concurrently with a write: their own answer must be the state
before or after the write, and every later cached answer must again be fresh.

The alphabet is small (three authors, two ``d`` values, six timestamps) so that requests hit
the cache, writes land on cached answers, and NIP-40 expirations fall inside the window the
requests' ``now`` moves in (backwards too).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from relay.nostr.event import Event, KindClass, d_tag, decode_event, kind_class
from relay.nostr.filters import Filter, parse_filter
from relay.nostr.limits import Limits
from relay.storage.cache import QueryCache
from relay.storage.cachedstore import CachedStore
from relay.storage.cachekey import Op
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.signer import Keys, dumps

KEYS = [Keys(seed) for seed in range(40, 43)]
PUBKEYS = [k.pubkey for k in KEYS]
REPLACEABLE = (0, 10002)
ADDRESSABLE = (30003, 33401, 33402)
CACHEABLE = REPLACEABLE + ADDRESSABLE
D_VALUES = ("a", "b")
BASE = 1_700_000_000
SPAN = 6
DEFAULT_LIMIT = 100
LIMITS = Limits()

nows = st.integers(BASE, BASE + SPAN + 1)


def event(what: str) -> None:
    """Statistics for ``--hypothesis-show-statistics`` (the spelled-out test runs outside)."""
    if currently_in_test_context():
        hypothesis_event(what)


def sign(key: int, kind: int, dt: int, tags: list[list[str]], content: str = "") -> str:
    return dumps(KEYS[key].sign(kind, content, tags, BASE + dt))


@st.composite
def versions(draw: st.DrawFn) -> str:
    """A new version of an address (sometimes expiring), or now and then a regular note."""
    key = draw(st.integers(0, len(KEYS) - 1))
    kind = draw(st.sampled_from((*CACHEABLE, 1)))
    tags: list[list[str]] = []
    if kind in ADDRESSABLE:
        tags.append(["d", draw(st.sampled_from(D_VALUES))])
    if draw(st.booleans()):
        tags.append(["expiration", str(BASE + draw(st.integers(1, SPAN + 1)))])
    content = draw(st.sampled_from(("", "v")))
    return sign(key, kind, draw(st.integers(0, SPAN - 1)), tags, content)


@st.composite
def filter_sets(draw: st.DrawFn, known_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One to three filters, nearly always cacheable."""
    filters: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3 if draw(st.integers(0, 3)) == 0 else 1))):
        raw: dict[str, Any] = {}
        kinds = draw(st.lists(st.sampled_from(CACHEABLE), min_size=1, max_size=3, unique=True))
        if draw(st.integers(0, 9)) == 0:
            kinds.append(1)  # not cacheable: straight to the store
        raw["kinds"] = kinds
        if draw(st.integers(0, 3)):
            raw["authors"] = draw(
                st.lists(st.sampled_from(PUBKEYS), min_size=0, max_size=2, unique=True)
            )
        if draw(st.integers(0, 3)) == 0:
            raw["#d"] = draw(st.lists(st.sampled_from(D_VALUES), min_size=1, unique=True))
        if known_ids and draw(st.integers(0, 9)) == 0:
            raw["ids"] = draw(st.lists(st.sampled_from(known_ids), min_size=1, max_size=2))
        if draw(st.integers(0, 4)) == 0:
            raw["limit"] = draw(st.sampled_from((0, 1, 2)))
        if draw(st.integers(0, 5)) == 0:
            raw["since"] = BASE + draw(st.integers(0, SPAN - 1))
        if draw(st.integers(0, 5)) == 0:
            raw["until"] = BASE + draw(st.integers(0, SPAN - 1))
        filters.append(raw)
    return filters


@st.composite
def touching(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A new version over the kinds and authors a filter asks for."""
    kind = draw(st.sampled_from(raw["kinds"]))
    authors = [PUBKEYS.index(a) for a in raw.get("authors", ())] or range(len(KEYS))
    tags = [["d", draw(st.sampled_from(D_VALUES))]] if kind in ADDRESSABLE else []
    return sign(draw(st.sampled_from(authors)), kind, draw(st.integers(0, SPAN)), tags, "race")


ACTIONS = (
    *("publish", "publish", "batch", "delete e", "delete a"),
    *("read", "read", "race", "strike", "strike"),
)


def strike(target: Event, way: str) -> str:
    """An event that removes ``target`` from every answer: its author's deletion by id or by
    address, or a newer version of its address."""
    key = PUBKEYS.index(target.pubkey)
    dt = target.created_at - BASE + 1
    if way == "e" or kind_class(target.kind) is not KindClass.ADDRESSABLE:
        if way == "version" and kind_class(target.kind) is KindClass.REPLACEABLE:
            return sign(key, target.kind, dt, [], "newer")
        return deletion_by_e(key, target.id, dt)
    if way == "a":
        return deletion_by_a(key, target.kind, d_tag(target), dt)
    return sign(key, target.kind, dt, [["d", d_tag(target)]], "newer")


class World:
    """The store, the cache in front of it, and what was written (not a dataclass, so a
    failing example prints short)."""

    def __init__(self, store: Store, cache: QueryCache) -> None:
        self.store = store
        self.cache = cache
        self.cached = CachedStore(store, cache)
        self.written: list[str] = []
        self.statuses: list[IngestStatus] = []

    def __repr__(self) -> str:
        return f"<World: {len(self.written)} events written>"

    async def commit(self, raws: Sequence[str]) -> None:
        """A writer batch: ingest, then invalidate every event of it (before any OK)."""
        events = [decode_event(raw.encode()) for raw in raws]
        self.statuses += await self.store.ingest(events, raws)
        for ev in events:
            self.cache.invalidate_event(ev.kind, ev.pubkey)
        self.written += raws

    async def fresh(self, op: Op, filters: Sequence[Filter], now: int) -> object:
        if op is Op.REQ:
            return await self.store.query(filters, now)
        return await self.store.count(filters, now)

    async def through_cache(self, op: Op, filters: Sequence[Filter], now: int) -> object:
        if op is Op.REQ:
            return await self.cached.query(filters, now)
        return await self.cached.count(filters, now)

    async def check(self, op: Op, filters: Sequence[Filter], now: int) -> None:
        """The cached answer is the fresh one; asked again, it is a hit if it was kept."""
        got = await self.through_cache(op, filters, now)
        assert got == await self.fresh(op, filters, now)
        key = self.cache.key(Op.REQ if op is Op.REQ else Op.COUNT, filters)
        kept = key is not None and self.cache.serves(key, now)
        event("answer kept" if kept else "answer not kept")
        hits = self.cache.hits
        again = await self.through_cache(op, filters, now)
        assert again == got
        if kept:
            assert self.cache.hits == hits + 1


def deletion_by_e(key: int, target_id: str, dt: int) -> str:
    return sign(key, 5, dt, [["e", target_id]])


def deletion_by_a(key: int, kind: int, d: str, dt: int) -> str:
    return sign(key, 5, dt, [["a", f"{kind}:{PUBKEYS[key]}:{d}"]])


@pytest.fixture
async def store(db_dsn: str) -> AsyncIterator[Store]:
    pool = await create_pool(db_dsn, min_size=2, max_size=4)
    try:
        yield Store(pool, default_limit=DEFAULT_LIMIT)
    finally:
        await pool.close()


async def reset(store: Store) -> None:
    async with store.pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM events; DELETE FROM event_tags; DELETE FROM deleted_events;"
            " DELETE FROM deleted_addresses; DELETE FROM removed_events"
        )


@settings(
    max_examples=70,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tiny=st.booleans(),
    data=st.data(),
)
async def test_cached_answers_are_always_fresh(
    store: Store, tiny: bool, data: st.DataObject
) -> None:
    await reset(store)
    # A tiny cache also exercises eviction; no max_age, so expiry alone bounds an answer.
    size = 3_000 if tiny else 64 * 2**20
    cache = QueryCache(max_bytes=size, max_entry_bytes=size, max_age=None)
    world = World(store, cache)
    upcoming = data.draw(st.lists(versions(), min_size=4, max_size=10), label="versions")
    # Clients repeat themselves: most reads are one of a few requests, asked again across
    # writes and as time moves (either way).
    requests = data.draw(
        st.lists(
            st.tuples(st.sampled_from((Op.REQ, Op.COUNT)), filter_sets(())), min_size=1, max_size=3
        ),
        label="requests",
    )
    for _step in range(data.draw(st.integers(6, 20), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        event(f"action {action}")
        if action == "publish":
            await world.commit([data.draw(st.sampled_from(upcoming), label="version")])
        elif action == "batch":
            await world.commit(
                data.draw(st.lists(st.sampled_from(upcoming), min_size=2, max_size=3), "batch")
            )
        elif action == "delete e":
            # Written or not yet: a deletion that arrives first refuses the version later,
            # which can still remove the current version of its address (status 2). Mostly
            # by the author, since only the author's deletions take effect.
            target = decode_event(data.draw(st.sampled_from(upcoming), label="target").encode())
            key = PUBKEYS.index(target.pubkey)
            if data.draw(st.integers(0, 3)) == 0:
                key = data.draw(st.integers(0, len(KEYS) - 1), label="deleter")
            await world.commit([deletion_by_e(key, target.id, data.draw(st.integers(0, SPAN)))])
        elif action == "delete a":
            key = data.draw(st.integers(0, len(KEYS) - 1), label="deleter")
            kind = data.draw(st.sampled_from(ADDRESSABLE), label="kind")
            d = data.draw(st.sampled_from(D_VALUES), label="d")
            await world.commit([deletion_by_a(key, kind, d, data.draw(st.integers(0, SPAN)))])
        else:
            if data.draw(st.integers(0, 4)):
                op, raws = data.draw(st.sampled_from(requests), label="request")
            else:
                ids = [decode_event(raw.encode()).id for raw in world.written]
                raws = data.draw(filter_sets(ids), label="filters")
                op = data.draw(st.sampled_from((Op.REQ, Op.COUNT)), label="op")
            filters = [parse_filter(raw, LIMITS) for raw in raws]
            now = data.draw(nows, label="now")
            if action == "race":
                write = data.draw(st.sampled_from(upcoming) | touching(raws[0]), label="version")
                before = await world.fresh(op, filters, now)
                raced, _ = await asyncio.gather(
                    world.through_cache(op, filters, now), world.commit([write])
                )
                after = await world.fresh(op, filters, now)
                assert raced in (before, after)
                event("race saw " + ("both equal" if before == after else "a change"))
            elif action == "strike":
                # Read, then change one of the events the answer holds, then read again.
                await world.check(op, filters, now)
                shown = await world.store.query(filters, now)
                if shown:
                    _id, raw = data.draw(st.sampled_from(shown), label="struck")
                    way = data.draw(st.sampled_from(("e", "a", "version")), label="way")
                    event(f"strike by {way}")
                    await world.commit([strike(decode_event(raw.encode()), way)])
            await world.check(op, filters, now)
    event(f"statuses {sorted({s.name for s in world.statuses})}")
    event(f"discarded by a race: {cache.discarded > 0}")
    event(f"evicted: {cache.evictions > 0}")
    assert cache.bytes <= cache.max_bytes
    assert cache.pending == 0


# -- the same, spelled out ----------------------------------------------------------------------


async def test_a_fitness_library_through_the_cache(store: Store) -> None:
    """The typical load, step by step, including the status-2 path: a version deleted by id
    before it arrives is refused, yet removes the version it would have replaced."""
    cache = QueryCache(max_age=None)
    world = World(store, cache)
    alice = 0
    library = [parse_filter({"kinds": [33401], "authors": [PUBKEYS[alice]]}, LIMITS)]
    squat_v1 = sign(alice, 33401, 1, [["d", "squat"]], "v1")
    squat_v2 = sign(alice, 33401, 2, [["d", "squat"]], "v2")
    bench = sign(alice, 33401, 1, [["d", "bench"]], "b")

    await world.commit([squat_v1, bench])
    rows = await world.cached.query(library, BASE)
    assert sorted(raw for _id, raw in rows) == sorted([squat_v1, bench])
    assert rows == await store.query(library, BASE)
    assert await world.cached.query(library, BASE) == rows
    assert (cache.misses, cache.hits) == (1, 1)

    # Someone else's write leaves the entry alone.
    await world.commit([sign(1, 33401, 3, [["d", "squat"]], "bob")])
    assert await world.cached.query(library, BASE) == rows
    assert cache.hits == 2

    # Alice deletes v2 by id before it arrives: every answer over Alice goes.
    await world.commit([deletion_by_e(alice, decode_event(squat_v2.encode()).id, 3)])
    assert cache.key(Op.REQ, library) not in cache
    await world.check(Op.REQ, library, BASE)

    # v2 arrives: refused (deleted), but it removes v1, which it would have replaced.
    await world.commit([squat_v2])
    assert world.statuses[-1] is IngestStatus.DELETED
    fresh = await store.query(library, BASE)
    assert [raw for _id, raw in fresh] == [bench]
    assert await world.cached.query(library, BASE) == fresh

    # Deletion by address, then a COUNT.
    await world.commit([deletion_by_a(alice, 33401, "bench", 5)])
    await world.check(Op.COUNT, library, BASE)
    assert await world.cached.count(library, BASE) == 0
