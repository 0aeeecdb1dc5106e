"""An in-memory cache of REQ and COUNT answers over replaceable and addressable kinds.

Fitness clients fetch the same few things again and again when they start: a popular author's
exercise library (``{"kinds":[33401],"authors":[pk]}``), templates and lists by address. Those
answers change only when that author writes or deletes, so they are kept in memory and dropped
exactly when a write could change them. Two classes:

* :class:`QueryCache`: the data structure. No I/O, no asyncio, no clock (``now`` is always
  passed in), so every rule below is tested directly.
* :class:`CachedStore`: wraps anything with the :class:`Store` ``query``/``count`` methods and
  answers through the cache, running a single database query for concurrent identical misses.

What is cached
    A REQ or COUNT whose every filter has a non-empty ``kinds`` made only of replaceable or
    addressable kinds (:func:`cache_key` says which). Those events change by a new version of
    an address or a deletion by their author, never by a stream of new regular events, so an
    answer lives long. ``since``/``until`` are absolute timestamps and simply part of the key.
    Answers of more than ``max_result_events`` events, or larger than ``max_entry_bytes``, are
    not kept; neither is a filter set that would need more than ``max_index_keys`` index
    entries (``(|kinds| + 1) x |authors|`` for a filter with authors, ``|kinds| + 1`` for one
    without, summed over the filters).

The key
    ``(request name, frozenset of canonical filters)``. A REQ's answer is the union of its filters'
    answers, merged newest first with ties by lowest id and each event once, so it does not
    depend on the order of the filters or on a filter given twice; the same holds for a COUNT.
    A canonical filter is the tuple of its fields with the tag conditions as a frozenset
    (letters are AND-ed, so their order does not matter either).

Invalidation (precise but safe)
    Every cached answer depends on a set of ``(kind, author)`` pairs: for a filter with
    ``authors``, its kinds times its authors; for a filter without, its kinds and *any* author.
    ``ids`` and tag conditions are ignored on purpose: a new version of an address removes the
    old version whatever the tags of either, so a change to ``(kind, author)`` must reach every
    answer over that pair. Four indexes keep this cheap (a write costs the entries it drops, not
    a scan of the cache):

    * ``(kind, author)`` -> entries with a filter naming that author and kind;
    * ``kind`` -> entries with an author-free filter over that kind;
    * ``author`` -> entries with a filter naming that author (for deletions);
    * the set of entries with any author-free filter (for deletions).

    :meth:`QueryCache.invalidate_event` of ``(kind, pubkey)`` drops the first two buckets. A
    kind-5 deletion may remove any kind of its author's events (by ``e`` or ``a`` tag), so for
    ``kind == 5`` it drops the last two instead. A removal from the log (replacement, deletion,
    expiry: ``removed_events`` rows carry ``kind`` and ``pubkey``) is invalidated the same way as
    a write of that pair. The caller must invalidate every event of a committed batch whatever
    its status: an event refused because it was deleted by id before it arrived can still remove
    the current version of its address (see migration 0002).

Races
    A query that started before a write and finishes after that write's invalidation may hold
    the old state and must not be kept. :meth:`QueryCache.begin` therefore files a *pending*
    slot in the same indexes before the query runs; an invalidation that reaches it marks it
    stale (a generation flag per slot, flipped only by the writes that concern it), and
    :meth:`QueryCache.finish_query` / :meth:`QueryCache.finish_count` keep the answer only if
    the slot is still pending. A query running beside unrelated writes is kept.
    :meth:`QueryCache.invalidate_all` makes every pending slot stale as well. The same flag
    decides whether :class:`CachedStore` lets a new request share a running query.

Time
    Stored events with a NIP-40 ``expiration`` tag are served while ``now < expiration``. An
    answer is valid from the ``now`` it was computed at (a request with an earlier ``now`` is a
    miss) until the earliest expiration among its events: at that instant one of them
    disappears and something else may take its place under a ``limit``. Expiration tags are
    read once, when an answer is stored, by decoding only the events whose raw JSON could hold
    one. A COUNT has no events to read, so :class:`CachedStore` asks the store for the counted
    events themselves (once, at the miss) when there are at most ``max_result_events`` of them,
    and does not keep larger counts. ``max_age`` (seconds) caps every answer's life as a
    backstop for invalidations this process cannot see (another process's removals pruned from
    ``removed_events`` before this process read them); ``None`` disables it.

Memory
    Bounded by ``max_bytes`` (an estimate: the raw JSON lengths plus a fixed overhead per event,
    per index entry and per cache entry, see ``_ROW_OVERHEAD`` and friends) and by
    ``max_entries``. Two tiers of LRU order: an entry whose every kind is in ``priority_kinds``
    (the fitness kinds by default) is high priority. Eviction takes the least recently used
    low-priority entry first and touches high-priority entries only when no low-priority one
    is left; a hit moves an entry to the most recent end of its tier.

Counters
    Plain integer attributes of :class:`QueryCache` for the metrics layer: ``hits``,
    ``misses``, ``bypassed`` (requests that cannot be cached), ``stored``, ``evictions``,
    ``invalidations`` (live entries dropped by a write), ``expirations``, ``discarded``
    (answers not kept because a write overtook their query), ``rejected`` (too large),
    ``coalesced`` (misses answered by another request's query), and the gauges ``entries``,
    ``bytes``, ``high_entries``, ``high_bytes`` and ``pending``.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TypeVar

from relay.nostr.filters import Filter
from relay.nostr.kinds import FITNESS_LIBRARY_KINDS
from relay.storage.cachekey import CacheKey, Op, Rows, cache_key, earliest_expiration

__all__ = [
    "NEVER",
    "QueryCache",
    "Slot",
]


NEVER = 2**63
"""``valid_until`` of an answer that no expiration limits."""

# Memory estimate, in bytes. CPython: a 32-byte ``bytes`` is 65, a 2-tuple 56, a list slot 8,
# an ASCII str 49 + its length; a set or dict slot with its share of table ~ 50-100; a slot
# object with its slots and two dict/OrderedDict entries ~ 400.
_ROW_OVERHEAD = 180
_INDEX_OVERHEAD = 100
_ENTRY_OVERHEAD = 600
_KEY_VALUE_OVERHEAD = 120  # per id, author, kind or tag value held by the key

_K = TypeVar("_K")


class _State(enum.Enum):
    PENDING = "pending"  # its query is running
    LIVE = "live"  # its answer is served
    STALE = "stale"  # a write reached it while its query ran: the answer will not be kept
    DEAD = "dead"  # dropped, abandoned or rejected


class Slot:
    """One cached answer: pending while its query runs, live once stored, then dead (dropped
    by a write, evicted or expired). Opaque to callers except through :class:`QueryCache`."""

    __slots__ = (
        "any_kinds",
        "authors",
        "high",
        "key",
        "overhead",
        "pairs",
        "size",
        "state",
        "valid_from",
        "valid_until",
        "value",
    )

    def __init__(self, key: CacheKey, valid_from: int, high: bool) -> None:
        self.key = key
        self.valid_from = valid_from
        self.valid_until = NEVER
        self.high = high
        self.state = _State.PENDING
        self.value: tuple[tuple[bytes, str], ...] | int = 0
        self.size = 0
        pairs: set[tuple[int, str]] = set()
        authors: set[str] = set()
        any_kinds: set[int] = set()
        values = 0  # ids, authors, kinds and tag values the key holds
        for ids, flt_authors, kinds, tags, _since, _until, _limit in key[1]:
            values += len(kinds) + (len(ids) if ids else 0)
            values += sum(len(tag_values) + 1 for _letter, tag_values in tags)
            if flt_authors is None:
                any_kinds.update(kinds)
            else:
                values += len(flt_authors)
                authors.update(flt_authors)
                pairs.update((kind, author) for kind in kinds for author in flt_authors)
        self.pairs = frozenset(pairs)
        self.authors = frozenset(authors)
        self.any_kinds = frozenset(any_kinds)
        index_entries = len(pairs) + len(authors) + len(any_kinds) + bool(any_kinds)
        self.overhead = (
            _ENTRY_OVERHEAD + _INDEX_OVERHEAD * index_entries + _KEY_VALUE_OVERHEAD * values
        )

    @property
    def alive(self) -> bool:
        """True while the slot is pending or live: no write has reached it."""
        return self.state is _State.PENDING or self.state is _State.LIVE


class QueryCache:
    """Answers of REQ/COUNT over replaceable and addressable kinds, with exact invalidation.

    Not thread-safe; meant for one event loop, where every method runs without interruption.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_entries: int = 50_000,
        max_result_events: int = 2_000,
        max_entry_bytes: int | None = None,
        max_index_keys: int = 4_096,
        max_age: int | None = 300,
        priority_kinds: frozenset[int] = FITNESS_LIBRARY_KINDS,
    ) -> None:
        if max_bytes <= 0 or max_entries <= 0:
            raise ValueError("max_bytes and max_entries must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_result_events = max_result_events
        self.max_entry_bytes = max_bytes // 8 if max_entry_bytes is None else max_entry_bytes
        self.max_index_keys = max_index_keys
        self.max_age = max_age
        self.priority_kinds = priority_kinds

        self._entries: dict[CacheKey, Slot] = {}
        self._low: OrderedDict[CacheKey, Slot] = OrderedDict()
        self._high: OrderedDict[CacheKey, Slot] = OrderedDict()
        self._pending: set[Slot] = set()
        self._by_pair: dict[tuple[int, str], set[Slot]] = {}
        self._by_author: dict[str, set[Slot]] = {}
        self._any_by_kind: dict[int, set[Slot]] = {}
        self._any_author: set[Slot] = set()

        self.hits = 0
        self.misses = 0
        self.bypassed = 0
        self.stored = 0
        self.evictions = 0
        self.invalidations = 0
        self.expirations = 0
        self.discarded = 0
        self.rejected = 0
        self.coalesced = 0
        self.entries = 0
        self.bytes = 0
        self.high_entries = 0
        self.high_bytes = 0
        self.pending = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over cacheable lookups (0.0 before the first)."""
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0

    def __len__(self) -> int:
        return self.entries

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def serves(self, key: CacheKey, now: int) -> bool:
        """Whether :meth:`get` would answer ``key`` at ``now`` from the cache (counting
        nothing): an answer is kept and valid then, which a kept answer computed at a later
        ``now`` is not."""
        slot = self._entries.get(key)
        return slot is not None and slot.valid_from <= now < slot.valid_until

    # -- lookups --------------------------------------------------------------------------

    def key(self, op: Op, filters: Sequence[Filter]) -> CacheKey | None:
        """:func:`cache_key` under this cache's ``max_index_keys``; counts a bypass on None."""
        key = cache_key(op, filters, max_index_keys=self.max_index_keys)
        if key is None:
            self.bypassed += 1
        return key

    def get(self, key: CacheKey, now: int) -> Rows | int | None:
        """The answer stored under ``key`` if it is valid at ``now``, else None (a miss).

        A REQ answer comes back as a new list (the caller may keep or change it); a COUNT
        answer as an int.
        """
        slot = self._entries.get(key)
        if slot is None:
            self.misses += 1
            return None
        if now >= slot.valid_until:
            self._drop(slot)
            self.expirations += 1
            self.misses += 1
            return None
        if now < slot.valid_from:
            self.misses += 1
            return None
        (self._high if slot.high else self._low).move_to_end(key)
        self.hits += 1
        value = slot.value
        return value if isinstance(value, int) else list(value)

    # -- filling --------------------------------------------------------------------------

    def begin(self, key: CacheKey, now: int) -> Slot:
        """Start filling ``key``: the answer about to be computed at ``now`` is kept by
        :meth:`finish_query` or :meth:`finish_count` only if no write that concerns it is
        invalidated in between.

        Call it before the query is sent to the database.
        """
        high = all(kind in self.priority_kinds for part in key[1] for kind in part[2])
        slot = Slot(key, now, high)
        self._index(slot)
        self._pending.add(slot)
        self.pending += 1
        return slot

    def abandon(self, slot: Slot) -> None:
        """Forget a pending slot whose query failed or whose answer is not wanted."""
        if slot.state is _State.PENDING:
            self._unindex(slot)
            self._pending.discard(slot)
            self.pending -= 1
            slot.state = _State.DEAD

    def finish_query(self, slot: Slot, rows: Sequence[tuple[bytes, str]]) -> bool:
        """Keep a REQ answer (exactly as the store returned it); True when it was kept."""
        if slot.state is not _State.PENDING:
            return self._overtaken(slot)
        if len(rows) > self.max_result_events:
            return self._reject(slot)
        size = sum(len(raw) for _id, raw in rows) + _ROW_OVERHEAD * len(rows)
        if size + slot.overhead > self.max_entry_bytes:  # before reading expirations
            return self._reject(slot)
        return self._keep(slot, tuple(rows), size, earliest_expiration(raw for _id, raw in rows))

    def finish_count(self, slot: Slot, count: int, expires: int | None) -> bool:
        """Keep a COUNT answer; ``expires`` is the earliest NIP-40 expiration among the counted
        events (None when none expires). True when it was kept."""
        if slot.state is not _State.PENDING:
            return self._overtaken(slot)
        return self._keep(slot, count, 0, expires)

    def valid_until(self, slot: Slot) -> int:
        """Until when (exclusive) a kept answer may be served; :data:`NEVER` if unbounded."""
        return slot.valid_until

    def reject(self, slot: Slot) -> None:
        """Give up a pending slot because its answer is too large to keep."""
        self._reject(slot)

    def _reject(self, slot: Slot) -> bool:
        if slot.state is _State.PENDING:
            self.abandon(slot)
            self.rejected += 1
        return False

    def _overtaken(self, slot: Slot) -> bool:
        if slot.state is _State.STALE:
            self.discarded += 1
            slot.state = _State.DEAD
        return False

    def _keep(
        self,
        slot: Slot,
        value: tuple[tuple[bytes, str], ...] | int,
        size: int,
        expires: int | None,
    ) -> bool:
        size += slot.overhead
        if size > self.max_entry_bytes:
            return self._reject(slot)
        until = NEVER if expires is None else expires
        if self.max_age is not None:
            until = min(until, slot.valid_from + self.max_age)
        if until <= slot.valid_from:  # cannot be served at all
            self.abandon(slot)
            return False
        self._pending.discard(slot)
        self.pending -= 1
        old = self._entries.get(slot.key)
        if old is not None:
            self._drop(old)
        slot.value = value
        slot.size = size
        slot.valid_until = until
        slot.state = _State.LIVE
        self._entries[slot.key] = slot
        (self._high if slot.high else self._low)[slot.key] = slot
        self.entries += 1
        self.bytes += size
        if slot.high:
            self.high_entries += 1
            self.high_bytes += size
        self.stored += 1
        self._evict()
        return slot.state is _State.LIVE

    def _evict(self) -> None:
        while self.bytes > self.max_bytes or self.entries > self.max_entries:
            tier = self._low if self._low else self._high
            _key, victim = tier.popitem(last=False)
            self._drop(victim, listed=False)
            self.evictions += 1

    # -- invalidation ---------------------------------------------------------------------

    def invalidate_event(self, kind: int, pubkey: str) -> int:
        """A write or removal of an event of ``kind`` by ``pubkey`` (hex) was committed:
        drop every answer it could change; returns how many live answers were dropped.

        Call it for every event of a committed batch (whatever its status), for every event
        read from the log, and for every ``removed_events`` row. Kind 5 drops every answer
        over any of the author's events.
        """
        if kind == 5:
            return self.invalidate_author(pubkey)
        victims: list[Slot] = []
        bucket = self._by_pair.get((kind, pubkey))
        if bucket:
            victims.extend(bucket)
        bucket = self._any_by_kind.get(kind)
        if bucket:
            victims.extend(bucket)
        return self._kill(victims)

    def invalidate_author(self, pubkey: str) -> int:
        """Drop every answer over any event of ``pubkey`` (a deletion may remove any kind)."""
        victims: list[Slot] = []
        bucket = self._by_author.get(pubkey)
        if bucket:
            victims.extend(bucket)
        victims.extend(self._any_author)
        return self._kill(victims)

    def invalidate_all(self) -> int:
        """Drop everything, pending answers included (for when writes may have been missed)."""
        dropped = self.entries
        for slot in self._pending:
            slot.state = _State.STALE
        for slot in self._entries.values():
            slot.state = _State.DEAD
        self._pending.clear()
        self._entries.clear()
        self._low.clear()
        self._high.clear()
        self._by_pair.clear()
        self._by_author.clear()
        self._any_by_kind.clear()
        self._any_author.clear()
        self.invalidations += dropped
        self.entries = self.bytes = self.high_entries = self.high_bytes = self.pending = 0
        return dropped

    def _kill(self, victims: Iterable[Slot]) -> int:
        dropped = 0
        for slot in victims:
            if slot.state is _State.LIVE:
                self._drop(slot)
                dropped += 1
            elif slot.state is _State.PENDING:
                self._unindex(slot)
                self._pending.discard(slot)
                self.pending -= 1
                slot.state = _State.STALE
        self.invalidations += dropped
        return dropped

    # -- bookkeeping ----------------------------------------------------------------------

    def _drop(self, slot: Slot, *, listed: bool = True) -> None:
        """Remove a live slot from the map, its LRU tier (unless already popped) and the
        indexes."""
        del self._entries[slot.key]
        if listed:
            del (self._high if slot.high else self._low)[slot.key]
        self._unindex(slot)
        self.entries -= 1
        self.bytes -= slot.size
        if slot.high:
            self.high_entries -= 1
            self.high_bytes -= slot.size
        slot.state = _State.DEAD
        slot.value = 0

    def _index(self, slot: Slot) -> None:
        for pair in slot.pairs:
            self._by_pair.setdefault(pair, set()).add(slot)
        for author in slot.authors:
            self._by_author.setdefault(author, set()).add(slot)
        for kind in slot.any_kinds:
            self._any_by_kind.setdefault(kind, set()).add(slot)
        if slot.any_kinds:
            self._any_author.add(slot)

    def _unindex(self, slot: Slot) -> None:
        _discard_all(self._by_pair, slot.pairs, slot)
        _discard_all(self._by_author, slot.authors, slot)
        _discard_all(self._any_by_kind, slot.any_kinds, slot)
        self._any_author.discard(slot)


def _discard_all(index: dict[_K, set[Slot]], keys: Iterable[_K], slot: Slot) -> None:
    for key in keys:
        bucket = index.get(key)
        if bucket is not None:
            bucket.discard(slot)
            if not bucket:
                del index[key]
