"""The query cache on its own (relay.storage.cache): keys, bounds, time, invalidation, races,
and the CachedStore wrapper over a scripted store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
import pytest

from relay.nostr.filters import Filter, parse_filter
from relay.nostr.kinds import FITNESS_LIBRARY_KINDS
from relay.nostr.limits import Limits
from relay.storage.cache import NEVER, QueryCache
from relay.storage.cachedstore import CachedStore
from relay.storage.cachekey import Op, Rows, cache_key, earliest_expiration
from tests.signer import Keys, dumps

_T = TypeVar("_T")
LIMITS = Limits()
BASE = 1_700_000_000
ALICE, BOB, CAROL = Keys(1), Keys(2), Keys(3)


def flt(**raw: Any) -> Filter:
    """A filter parsed like a client's (``d=[...]`` stands for ``#d``)."""
    if "d" in raw:
        raw["#d"] = raw.pop("d")
    return parse_filter(raw, LIMITS)


def event(keys: Keys, kind: int, d: str = "", *, at: int = BASE, exp: int | None = None) -> str:
    tags = [["d", d]] if d else []
    if exp is not None:
        tags.append(["expiration", str(exp)])
    return dumps(keys.sign(kind, f"{kind}/{d}", tags, at))


def rows_of(*raws: str) -> Rows:
    return [(bytes.fromhex(msgspec.json.decode(raw)["id"]), raw) for raw in raws]


def put(cache: QueryCache, filters: Sequence[Filter], rows: Rows, *, now: int = BASE) -> bool:
    key = cache.key(Op.REQ, filters)
    assert key is not None
    return cache.finish_query(cache.begin(key, now), rows)


def cached(cache: QueryCache, filters: Sequence[Filter], *, now: int = BASE) -> Rows | None:
    key = cache.key(Op.REQ, filters)
    assert key is not None
    value = cache.get(key, now)
    assert not isinstance(value, int)
    return value


def empty_indexes(cache: QueryCache) -> bool:
    return not (
        cache._by_pair
        or cache._by_author
        or cache._any_by_kind
        or cache._any_author
        or cache._entries
        or cache._low
        or cache._high
        or cache._pending
    )


LIBRARY = [flt(kinds=[33401], authors=[ALICE.pubkey])]
ALICE_EXERCISE = event(ALICE, 33401, "squat")


# -- what is cacheable, and the key ---------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "cacheable"),
    [
        ([flt(kinds=[0])], True),
        ([flt(kinds=[3, 10002])], True),
        ([flt(kinds=[33401, 33402], authors=[ALICE.pubkey], d=["squat"])], True),
        ([flt(kinds=[30003], since=BASE, until=BASE + 5, limit=3)], True),
        ([flt(ids=["00" * 32], kinds=[0])], True),
        ([flt(kinds=[1])], False),  # regular
        ([flt(kinds=[0, 1301])], False),  # one regular kind spoils it
        ([flt(kinds=[20001])], False),  # ephemeral
        ([flt(kinds=[])], False),  # empty kinds
        ([flt(authors=[ALICE.pubkey])], False),  # no kinds
        ([flt(kinds=[0]), flt(kinds=[1])], False),  # every filter must qualify
        ([], False),
    ],
)
def test_cacheable_requests(filters: list[Filter], cacheable: bool) -> None:
    cache = QueryCache()
    assert (cache.key(Op.REQ, filters) is not None) is cacheable
    assert cache.bypassed == (0 if cacheable else 1)


def test_requests_needing_too_many_index_keys_are_not_cached() -> None:
    authors = [Keys(i).pubkey for i in range(10, 30)]
    filters = [flt(kinds=[0, 3, 10002], authors=authors)]  # 3 x 20 pairs + 20 authors
    assert cache_key(Op.REQ, filters, max_index_keys=80) is not None
    assert cache_key(Op.REQ, filters, max_index_keys=79) is None


def test_key_is_canonical() -> None:
    a = flt(kinds=[33401, 33402], authors=[ALICE.pubkey, BOB.pubkey], d=["x", "y"])
    a_again = flt(authors=[BOB.pubkey, ALICE.pubkey], d=["y", "x"], kinds=[33402, 33401])
    b = flt(kinds=[0], authors=[CAROL.pubkey])
    assert cache_key(Op.REQ, [a, b]) == cache_key(Op.REQ, [b, a_again])
    assert cache_key(Op.REQ, [a, b, a]) == cache_key(Op.REQ, [a, b])
    tagged = Filter(kinds=frozenset({30003}), tags=(("d", frozenset("a")), ("p", frozenset("b"))))
    swapped = Filter(kinds=frozenset({30003}), tags=(("p", frozenset("b")), ("d", frozenset("a"))))
    assert cache_key(Op.REQ, [tagged]) == cache_key(Op.REQ, [swapped])


def test_key_keeps_what_changes_the_answer() -> None:
    base = flt(kinds=[33401], authors=[ALICE.pubkey])
    keys = {
        cache_key(Op.REQ, [base]),
        cache_key(Op.COUNT, [base]),
        cache_key(Op.REQ, [flt(kinds=[33401], authors=[ALICE.pubkey], limit=5)]),
        cache_key(Op.REQ, [flt(kinds=[33401], authors=[ALICE.pubkey], since=BASE)]),
        cache_key(Op.REQ, [flt(kinds=[33401], authors=[ALICE.pubkey], until=BASE)]),
        cache_key(Op.REQ, [flt(kinds=[33401], authors=[ALICE.pubkey], d=["a"])]),
        cache_key(Op.REQ, [flt(kinds=[33401])]),
        cache_key(Op.REQ, [flt(kinds=[33401], authors=[])]),
        cache_key(Op.REQ, [flt(kinds=[33401, 33402], authors=[ALICE.pubkey])]),
        cache_key(Op.REQ, [base, flt(kinds=[0])]),
    }
    assert None not in keys
    assert len(keys) == 10


# -- storing and serving ----------------------------------------------------------------------


def test_hit_returns_the_stored_rows_in_order_as_a_new_list() -> None:
    cache = QueryCache()
    rows = rows_of(event(ALICE, 33401, "b", at=BASE + 1), event(ALICE, 33401, "a"))
    assert cached(cache, LIBRARY) is None
    assert put(cache, LIBRARY, rows)
    first = cached(cache, LIBRARY)
    assert first == rows
    assert first is not None
    first.clear()
    assert cached(cache, LIBRARY) == rows
    assert (cache.hits, cache.misses, cache.stored, cache.entries) == (2, 1, 1, 1)
    assert cache.hit_ratio == pytest.approx(2 / 3)
    assert cache.bytes > sum(len(raw) for _id, raw in rows)


def test_count_answers_are_kept_apart_from_req_answers() -> None:
    cache = QueryCache()
    key = cache.key(Op.COUNT, LIBRARY)
    assert key is not None
    assert cache.finish_count(cache.begin(key, BASE), 7, None)
    assert cache.get(key, BASE) == 7
    assert cached(cache, LIBRARY) is None


def test_empty_answers_are_kept() -> None:
    cache = QueryCache()
    assert put(cache, LIBRARY, [])
    assert cached(cache, LIBRARY) == []


def _probe_size(rows: Rows) -> int:
    probe = QueryCache()
    put(probe, LIBRARY, rows)
    return probe.bytes


def test_least_recently_used_is_evicted_under_the_byte_bound() -> None:
    rows = rows_of(ALICE_EXERCISE)
    size = _probe_size(rows)
    # Four same-shaped low-priority entries (kind 0 of four authors); room for three.
    cache = QueryCache(max_bytes=3 * size + size // 2, max_entry_bytes=size)
    profiles = [[flt(kinds=[0], authors=[Keys(i).pubkey])] for i in range(4)]
    for filters in profiles[:3]:
        assert put(cache, filters, rows)
    assert cache.bytes == 3 * size
    assert cached(cache, profiles[0]) is not None  # 0 is now the most recent
    assert put(cache, profiles[3], rows)
    assert cache.evictions == 1
    assert cached(cache, profiles[1]) is None  # the least recent went
    assert all(cached(cache, p) is not None for p in (profiles[0], profiles[2], profiles[3]))
    assert cache.bytes == 3 * size <= cache.max_bytes


def test_low_priority_entries_go_before_fitness_entries() -> None:
    rows = rows_of(ALICE_EXERCISE)
    size = _probe_size(rows)
    cache = QueryCache(max_bytes=3 * size + size // 2, max_entry_bytes=size)
    fitness = [[flt(kinds=[k], authors=[ALICE.pubkey])] for k in (33401, 33402, 30003)]
    other = [flt(kinds=[30023], authors=[ALICE.pubkey])]  # long-form articles
    assert put(cache, fitness[0], rows)
    assert put(cache, other, rows)
    assert put(cache, fitness[1], rows)
    assert (cache.high_entries, cache.entries) == (2, 3)
    cached(cache, other)  # recently used, but low priority
    assert put(cache, fitness[2], rows)
    assert cached(cache, other) is None
    assert all(cached(cache, f) is not None for f in fitness)
    # Only fitness entries left: the least recently used of them goes next.
    cached(cache, fitness[0])
    assert put(cache, [flt(kinds=[33403], authors=[ALICE.pubkey])], rows)
    assert cached(cache, fitness[1]) is None
    assert cache.evictions == 2
    assert cache.high_bytes == cache.bytes == 3 * size


def test_a_low_priority_entry_does_not_displace_fitness_entries() -> None:
    rows = rows_of(ALICE_EXERCISE)
    size = _probe_size(rows)
    cache = QueryCache(max_bytes=2 * size + size // 2, max_entry_bytes=size)
    assert put(cache, LIBRARY, rows)
    assert put(cache, [flt(kinds=[33402], authors=[ALICE.pubkey])], rows)
    assert not put(cache, [flt(kinds=[0], authors=[ALICE.pubkey])], rows)
    assert (cache.entries, cache.high_entries, cache.evictions) == (2, 2, 1)


def test_fitness_priority_needs_every_kind_to_be_a_fitness_kind() -> None:
    cache = QueryCache()
    assert 33401 in FITNESS_LIBRARY_KINDS
    put(cache, [flt(kinds=[33401, 0], authors=[ALICE.pubkey])], [])
    put(cache, [flt(kinds=[33401]), flt(kinds=[30004], authors=[BOB.pubkey])], [])
    assert (cache.entries, cache.high_entries) == (2, 1)


def test_entry_count_is_bounded() -> None:
    cache = QueryCache(max_entries=2)
    for i in range(5):
        put(cache, [flt(kinds=[0], authors=[Keys(i).pubkey])], [])
    assert cache.entries == 2
    assert cache.evictions == 3


def test_large_answers_are_not_kept() -> None:
    rows = rows_of(*(event(ALICE, 33401, str(i)) for i in range(3)))
    assert not put(QueryCache(max_result_events=2), LIBRARY, rows)
    assert not put(QueryCache(max_entry_bytes=sum(len(raw) for _id, raw in rows)), LIBRARY, rows)
    cache = QueryCache(max_result_events=3)
    assert put(cache, LIBRARY, rows)
    small = QueryCache(max_result_events=2)
    put(small, LIBRARY, rows)
    assert (small.rejected, small.entries, small.pending) == (1, 0, 0)
    assert empty_indexes(small)


# -- time -------------------------------------------------------------------------------------


def test_earliest_expiration_reads_only_what_it_must() -> None:
    escaped = dumps(ALICE.sign(33401, "", [["d", "e"]], BASE)).replace(
        '"d"', '"d","x"'
    )  # any JSON without the word: never decoded, so never needs to be valid
    assert earliest_expiration(['{"not":"an event"}', escaped]) is None
    later = event(ALICE, 33401, "a", exp=BASE + 50)
    sooner = event(BOB, 33401, "b", exp=BASE + 20)
    junk = dumps(ALICE.sign(33401, "", [["expiration", "soon"]], BASE))
    assert earliest_expiration([later, ALICE_EXERCISE, sooner, junk]) == BASE + 20
    # The tag name spelled with a JSON escape is still an expiration tag.
    spelled = event(CAROL, 33401, "c", exp=BASE + 10).replace("expiration", "expir\\u0061tion")
    assert "expiration" not in spelled
    assert earliest_expiration([spelled]) == BASE + 10


def test_answer_expires_with_its_earliest_event() -> None:
    cache = QueryCache(max_age=None)
    rows = rows_of(event(ALICE, 33401, "a", exp=BASE + 30), event(ALICE, 33401, "b"))
    put(cache, LIBRARY, rows, now=BASE)
    assert cached(cache, LIBRARY, now=BASE + 29) == rows
    assert cached(cache, LIBRARY, now=BASE + 30) is None  # expires_at <= now: gone
    assert (cache.expirations, cache.entries, cache.bytes) == (1, 0, 0)
    assert empty_indexes(cache)


def test_answer_is_not_served_before_it_was_computed() -> None:
    cache = QueryCache()
    put(cache, LIBRARY, rows_of(ALICE_EXERCISE), now=BASE)
    assert cached(cache, LIBRARY, now=BASE - 1) is None
    assert cached(cache, LIBRARY, now=BASE) is not None  # kept for later requests


def test_max_age_caps_every_answer() -> None:
    cache = QueryCache(max_age=60)
    put(cache, LIBRARY, [], now=BASE)
    assert cached(cache, LIBRARY, now=BASE + 59) == []
    assert cached(cache, LIBRARY, now=BASE + 60) is None
    no_cap = QueryCache(max_age=None)
    put(no_cap, LIBRARY, [], now=BASE)
    assert cached(no_cap, LIBRARY, now=NEVER - 1) == []


# -- invalidation -----------------------------------------------------------------------------


def _fill(cache: QueryCache) -> dict[str, list[Filter]]:
    requests = {
        "alice library": LIBRARY,
        "alice templates by d": [flt(kinds=[33402], authors=[ALICE.pubkey], d=["push"])],
        "alice+bob both kinds": [flt(kinds=[33401, 33402], authors=[ALICE.pubkey, BOB.pubkey])],
        "bob library": [flt(kinds=[33401], authors=[BOB.pubkey])],
        "every library": [flt(kinds=[33401])],
        "every profile": [flt(kinds=[0])],
        "alice profile": [flt(kinds=[0], authors=[ALICE.pubkey])],
        "nobody": [flt(kinds=[33401], authors=[])],
        "mixed": [flt(kinds=[0], authors=[CAROL.pubkey]), flt(kinds=[33402])],
    }
    for filters in requests.values():
        assert put(cache, filters, [])
    return requests


def _left(cache: QueryCache, requests: dict[str, list[Filter]]) -> set[str]:
    return {name for name, filters in requests.items() if (cache.key(Op.REQ, filters) in cache)}


def test_a_write_drops_answers_over_its_kind_and_author() -> None:
    cache = QueryCache()
    requests = _fill(cache)
    assert cache.invalidate_event(33401, ALICE.pubkey) == 3
    assert _left(cache, requests) == set(requests) - {
        "alice library",
        "alice+bob both kinds",
        "every library",
    }
    assert cache.invalidations == 3


def test_any_author_filters_are_dropped_by_every_author() -> None:
    cache = QueryCache()
    requests = _fill(cache)
    stranger = Keys(99).pubkey
    assert cache.invalidate_event(33402, stranger) == 1
    assert _left(cache, requests) == set(requests) - {"mixed"}
    assert cache.invalidate_event(0, stranger) == 1
    assert "every profile" not in _left(cache, requests)
    assert cache.invalidate_event(33401, stranger) == 1
    assert "every library" not in _left(cache, requests)
    assert cache.invalidate_event(1, stranger) == 0  # regular kinds are never cached


def test_a_deletion_drops_every_answer_over_its_author() -> None:
    cache = QueryCache()
    requests = _fill(cache)
    assert cache.invalidate_event(5, ALICE.pubkey) == 7
    assert _left(cache, requests) == {"bob library", "nobody"}


def test_dropping_everything_leaves_no_trace() -> None:
    cache = QueryCache()
    requests = _fill(cache)
    for kind in (0, 33401, 33402):
        for keys in (ALICE, BOB, CAROL):
            cache.invalidate_event(kind, keys.pubkey)
    assert _left(cache, requests) == {"nobody"}
    cache.invalidate_event(5, ALICE.pubkey)
    assert cache.invalidate_all() == 1
    assert (cache.entries, cache.bytes, cache.high_entries, cache.high_bytes) == (0, 0, 0, 0)
    assert empty_indexes(cache)
    assert cache.invalidations == len(requests)


# -- races ------------------------------------------------------------------------------------


def test_a_query_overtaken_by_a_write_is_not_kept() -> None:
    cache = QueryCache()
    key = cache.key(Op.REQ, LIBRARY)
    assert key is not None
    slot = cache.begin(key, BASE)  # the query starts
    assert cache.pending == 1
    cache.invalidate_event(33401, ALICE.pubkey)  # a write commits meanwhile
    assert not slot.alive
    assert not cache.finish_query(slot, rows_of(ALICE_EXERCISE))  # old state: dropped
    assert key not in cache
    assert (cache.discarded, cache.pending, cache.invalidations) == (1, 0, 0)
    assert empty_indexes(cache)


@pytest.mark.parametrize(
    "write",
    [(33401, BOB.pubkey), (33402, ALICE.pubkey), (0, ALICE.pubkey), (5, BOB.pubkey)],
)
def test_a_query_beside_unrelated_writes_is_kept(write: tuple[int, str]) -> None:
    cache = QueryCache()
    key = cache.key(Op.REQ, LIBRARY)
    assert key is not None
    slot = cache.begin(key, BASE)
    cache.invalidate_event(*write)
    assert cache.finish_query(slot, rows_of(ALICE_EXERCISE))
    assert key in cache


@pytest.mark.parametrize("writer", ["deletion", "any author", "all"])
def test_every_kind_of_invalidation_reaches_pending_queries(writer: str) -> None:
    cache = QueryCache()
    key = cache.key(Op.COUNT, [flt(kinds=[33401])])
    assert key is not None
    slot = cache.begin(key, BASE)
    if writer == "deletion":
        cache.invalidate_event(5, CAROL.pubkey)
    elif writer == "any author":
        cache.invalidate_event(33401, CAROL.pubkey)
    else:
        cache.invalidate_all()
    assert not cache.finish_count(slot, 3, None)
    assert key not in cache
    assert cache.discarded == 1
    assert empty_indexes(cache)


def test_a_later_answer_replaces_an_earlier_one() -> None:
    cache = QueryCache()
    key = cache.key(Op.REQ, LIBRARY)
    assert key is not None
    first, second = cache.begin(key, BASE), cache.begin(key, BASE + 1)
    assert cache.finish_query(first, [])
    assert cache.finish_query(second, rows_of(ALICE_EXERCISE))
    assert cache.entries == 1
    assert cached(cache, LIBRARY, now=BASE + 1) == rows_of(ALICE_EXERCISE)
    cache.invalidate_event(33401, ALICE.pubkey)
    assert empty_indexes(cache)


def test_abandoned_queries_leave_no_trace() -> None:
    cache = QueryCache()
    key = cache.key(Op.REQ, LIBRARY)
    assert key is not None
    slot = cache.begin(key, BASE)
    cache.abandon(slot)
    assert not cache.finish_query(slot, [])
    assert (cache.pending, cache.discarded) == (0, 0)
    assert empty_indexes(cache)


# -- CachedStore ------------------------------------------------------------------------------


class ScriptedStore:
    """Answers from a dict; records calls; can hold queries until released."""

    def __init__(self) -> None:
        self.rows: Rows = []
        self.calls: list[tuple[str, int]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def query(self, filters: Sequence[Filter], now: int) -> Rows:
        self.calls.append(("query", now))
        return await self._answer(list(self.rows))

    async def count(self, filters: Sequence[Filter], now: int) -> int:
        self.calls.append(("count", now))
        return await self._answer(len(self.rows))

    async def _answer(self, value: _T) -> _T:
        """``value`` (read when called), once the gate opens. Tasks started meanwhile run
        their first steps before a released query resumes (the loop is FIFO), so a test can
        line up followers without sleeping."""
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return value


async def test_a_hit_does_not_reach_the_store() -> None:
    inner = ScriptedStore()
    inner.rows = rows_of(ALICE_EXERCISE)
    store = CachedStore(inner, QueryCache())
    assert await store.query(LIBRARY, BASE) == inner.rows
    assert await store.query(LIBRARY, BASE + 1) == inner.rows
    assert inner.calls == [("query", BASE)]
    assert store.cache.hits == 1


async def test_uncacheable_requests_go_straight_to_the_store() -> None:
    inner = ScriptedStore()
    store = CachedStore(inner, QueryCache())
    notes = [flt(kinds=[1], authors=[ALICE.pubkey])]
    for _ in range(2):
        assert await store.query(notes, BASE) == []
        assert await store.count(notes, BASE) == 0
    assert len(inner.calls) == 4
    assert (store.cache.bypassed, store.cache.entries) == (4, 0)


async def test_a_write_between_requests_is_read() -> None:
    inner = ScriptedStore()
    store = CachedStore(inner, QueryCache())
    assert await store.query(LIBRARY, BASE) == []
    inner.rows = rows_of(ALICE_EXERCISE)  # committed ...
    store.cache.invalidate_event(33401, ALICE.pubkey)  # ... and invalidated before OK
    assert await store.query(LIBRARY, BASE) == inner.rows


async def test_concurrent_misses_share_one_query() -> None:
    inner = ScriptedStore()
    inner.rows = rows_of(ALICE_EXERCISE)
    inner.gate = asyncio.Event()
    store = CachedStore(inner, QueryCache())
    first = asyncio.create_task(store.query(LIBRARY, BASE))
    await inner.entered.wait()
    second = asyncio.create_task(store.query(LIBRARY, BASE + 1))
    third = asyncio.create_task(store.query(LIBRARY, BASE - 1))  # earlier clock: own query
    inner.gate.set()
    results = await asyncio.gather(first, second, third)
    assert list(results) == [inner.rows] * 3
    assert results[0] is not results[1]
    assert inner.calls == [("query", BASE), ("query", BASE - 1)]
    assert store.cache.coalesced == 1


async def test_a_request_after_an_invalidation_does_not_join_the_older_query() -> None:
    inner = ScriptedStore()
    inner.gate = asyncio.Event()
    store = CachedStore(inner, QueryCache())
    before = asyncio.create_task(store.query(LIBRARY, BASE))
    await inner.entered.wait()
    store.cache.invalidate_event(33401, ALICE.pubkey)
    after = asyncio.create_task(store.query(LIBRARY, BASE))
    inner.gate.set()
    await asyncio.gather(before, after)
    assert len(inner.calls) == 2
    assert store.cache.coalesced == 0
    assert store.cache.discarded == 1
    assert store.cache.entries == 1  # the second answer was kept


async def test_a_cancelled_requester_does_not_cancel_the_shared_query() -> None:
    inner = ScriptedStore()
    inner.rows = rows_of(ALICE_EXERCISE)
    inner.gate = asyncio.Event()
    store = CachedStore(inner, QueryCache())
    leader = asyncio.create_task(store.query(LIBRARY, BASE))
    await inner.entered.wait()
    follower = asyncio.create_task(store.query(LIBRARY, BASE))
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    inner.gate.set()
    assert await follower == inner.rows
    assert store.cache.entries == 1
    assert len(inner.calls) == 1


async def test_a_failed_query_reaches_every_requester_and_keeps_nothing() -> None:
    inner = ScriptedStore()
    inner.gate = asyncio.Event()
    inner.fail = RuntimeError("database away")
    store = CachedStore(inner, QueryCache())
    tasks = [asyncio.create_task(store.query(LIBRARY, BASE)) for _ in range(2)]
    await inner.entered.wait()
    inner.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert (store.cache.entries, store.cache.pending) == (0, 0)
    assert empty_indexes(store.cache)
    inner.fail = None
    inner.gate = None
    assert await store.query(LIBRARY, BASE) == []
    assert store.cache.entries == 1


async def test_a_count_is_kept_until_a_counted_event_expires() -> None:
    inner = ScriptedStore()
    inner.rows = rows_of(event(ALICE, 33401, "a", exp=BASE + 10), ALICE_EXERCISE)
    store = CachedStore(inner, QueryCache())
    assert await store.count(LIBRARY, BASE) == 2
    assert inner.calls == [("count", BASE), ("query", BASE)]  # the probe for expirations
    assert await store.count(LIBRARY, BASE + 9) == 2
    assert len(inner.calls) == 2
    inner.rows = inner.rows[1:]  # the store no longer counts the expired one
    assert await store.count(LIBRARY, BASE + 10) == 1
    assert store.cache.expirations == 1


async def test_empty_counts_need_no_probe_and_large_counts_are_not_kept() -> None:
    inner = ScriptedStore()
    store = CachedStore(inner, QueryCache(max_result_events=1))
    assert await store.count(LIBRARY, BASE) == 0
    assert await store.count(LIBRARY, BASE) == 0
    assert inner.calls == [("count", BASE)]
    inner.rows = rows_of(ALICE_EXERCISE, event(ALICE, 33401, "b"))
    everyone = [flt(kinds=[33401])]
    assert await store.count(everyone, BASE) == 2
    assert await store.count(everyone, BASE) == 2
    assert [c for c, _now in inner.calls] == ["count", "count", "count"]
    assert store.cache.rejected == 2


async def test_close_cancels_shared_queries() -> None:
    inner = ScriptedStore()
    inner.gate = asyncio.Event()
    store = CachedStore(inner, QueryCache())
    waiting = asyncio.create_task(store.query(LIBRARY, BASE))
    await inner.entered.wait()
    await store.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (store.cache.pending, store.cache.entries) == (0, 0)


def test_an_answer_serves_from_its_now_on_and_counts_nothing_when_asked() -> None:
    cache = QueryCache()
    key = cache.key(Op.REQ, LIBRARY)
    assert key is not None
    assert cache.finish_query(cache.begin(key, BASE), rows_of(ALICE_EXERCISE))
    hits, misses = cache.hits, cache.misses
    assert cache.serves(key, BASE) and cache.serves(key, BASE + 60)
    assert not cache.serves(key, BASE - 1)  # computed later than this request's now
    assert (cache.hits, cache.misses) == (hits, misses)
    assert (cache.get(key, BASE - 1) is None) and (cache.get(key, BASE) is not None)
