"""The newest stored events held in the relay's memory, answering REQs without PostgreSQL.

A :class:`Mirror` holds every stored event whose ``created_at`` is at or after its *horizon*
(all of them while the database fits its bound), indexed the ways filters read them: by id,
by kind, by author, by author and kind, by single-letter tag value, and all together, each
stream sorted in answer order (``created_at`` descending, ties by lowest id).

It follows the log exactly. The log tail reads the events appended and the removals logged
since its last read in one REPEATABLE READ snapshot (:meth:`Store.log_snapshot`); applying
the whole snapshot makes the mirror equal to the database at that moment (within the
horizon). A snapshot read in bounded pages leaves the mirror *unsettled* until a read comes
back short, and an unsettled mirror answers nothing.

A query is answered here when the mirror has settled since the last write this process
made (the store calls :meth:`Mirror.written` after each batch it stores, before any OK), so
a client reads its own writes and those of every client of this process; otherwise, when
the answer could reach below the horizon, or for a filter of a kind the mirror does not
index, :class:`MirroredStore` asks PostgreSQL. Writes by other
processes reach the mirror with the log tail's latency, as they reach live subscribers.
Which events match is decided by :func:`relay.nostr.filters.matches` (the live matcher,
property-tested against the SQL) and NIP-40 expiration at the query's ``now``.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeAlias

from relay.nostr.event import Event, expiration
from relay.nostr.filters import Filter, matches
from relay.storage.cachedstore import PagedStore, QueryStore
from relay.storage.cachekey import Rows
from relay.storage.indexing import TAG_LETTERS

__all__ = ["Mirror", "MirroredStore", "answer_pages"]


MAX_MERGED_STREAMS = 2_000
"""A filter whose cheapest reading merges more streams than this goes to PostgreSQL."""

_STREAM_COST = 3.0
"""What merging one more stream costs, in events scanned."""

_Key: TypeAlias = tuple[int, int]


class _Held:
    """One event held: its sort key (``created_at``, minus the id as an integer, so that an
    ascending list read from its end gives answer order), what the answer sends and what
    matching reads (the event without content and signature, and with only the tags
    filters can name: one-letter names, each name and value once)."""

    __slots__ = ("event", "expires", "id_bytes", "key", "raw")

    def __init__(self, event: Event, raw: str) -> None:
        pairs = dict.fromkeys(
            (tag[0], tag[1]) for tag in event.tags if len(tag) >= 2 and tag[0] in TAG_LETTERS
        )
        self.event = Event(
            event.id, event.pubkey, event.created_at, event.kind, [list(p) for p in pairs], "", ""
        )
        self.raw = raw
        self.id_bytes = bytes.fromhex(event.id)
        self.key: _Key = (event.created_at, -int.from_bytes(self.id_bytes, "big"))
        self.expires = expiration(event)


def _sort_key(held: _Held) -> _Key:
    return held.key


_Stream: TypeAlias = list[_Held]


def _newest(stream: _Stream, until: int | None) -> Iterator[_Held]:
    """``stream``'s events from the newest at or before ``until``, in answer order."""
    end = len(stream) if until is None else bisect.bisect_right(stream, until, key=_created)
    for i in range(end - 1, -1, -1):
        yield stream[i]


def _created(held: _Held) -> int:
    return held.key[0]


class Mirror:
    """The newest events of the database, at most ``max_events`` of them (see the module)."""

    def __init__(self, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.horizon: int | None = None
        """Every stored event with ``created_at`` at or after this is held; None: all are."""
        self.settled = False
        """The mirror equals the database as of its last snapshot."""
        self.writes = 0
        """Writes this process has made (counted before their OK)."""
        self.covered = -1
        """The count of :attr:`writes` the last settling snapshot began after."""
        self.broken = False
        self.answered = 0
        self.declined = 0
        self._by_id: dict[str, _Held] = {}
        self._all: _Stream = []
        self._kinds: dict[int, _Stream] = {}
        self._authors: dict[str, _Stream] = {}
        self._author_kinds: dict[tuple[str, int], _Stream] = {}
        self._tags: dict[tuple[str, str], _Stream] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    # -- following the log ---------------------------------------------------------------

    def written(self) -> None:
        """This process tried to store a batch (it may have committed): answers wait for
        the next settling snapshot."""
        self.writes += 1

    def give_up(self) -> None:
        """Hold nothing and answer nothing from now on (an event the mirror cannot hold)."""
        self.clear()
        self.broken = True

    def clear(self) -> None:
        """Forget every event (before a fresh load); unsettled until the next snapshot."""
        self.settled = False
        self.horizon = None
        self._by_id = {}
        self._all = []
        self._kinds = {}
        self._authors = {}
        self._author_kinds = {}
        self._tags = {}

    def apply(
        self,
        appended: Iterable[tuple[Event, str]],
        removed: Iterable[bytes],
        *,
        settles: bool,
        began_after: int,
    ) -> None:
        """Apply a stretch of the log: the events appended (that are still stored) and the
        ids removed. ``settles``: the stretch reaches the end of its snapshot, which began
        after ``began_after`` writes of this process."""
        if self.broken:
            return
        for event_id in removed:
            self._remove(event_id.hex())
        for event, raw in appended:
            self._add(event, raw)
        if len(self._by_id) > self.max_events:
            self._evict()
        self.settled = settles and not self.broken
        if settles:
            self.covered = began_after

    def load(self, newest: Sequence[tuple[Event, str]], *, limit: int, began_after: int) -> None:
        """Start from the ``limit`` newest events of a snapshot (``newest``, in any order)
        that began after ``began_after`` writes of this process. When there were that many,
        the events at the oldest ``created_at`` among them may not all be there: they are
        dropped and the horizon is just above them."""
        if self.broken:
            return
        self.clear()
        # Oldest first, so that every event goes at the end of its streams (the sort is
        # linear for a snapshot read newest first).
        for held in sorted((_Held(event, raw) for event, raw in newest), key=_sort_key):
            self._insert(held)
        if len(newest) >= limit and self._all:
            self._cut(self._all[0].key[0] + 1)
        self.settled = not self.broken
        self.covered = began_after

    def _indexes_of(self, held: _Held) -> Iterator[tuple[dict[Any, _Stream], object]]:
        """Each index that files ``held``, with the key it files it under."""
        event = held.event
        yield self._kinds, event.kind
        yield self._authors, event.pubkey
        yield self._author_kinds, (event.pubkey, event.kind)
        for name, value in event.tags:
            yield self._tags, (name, value)

    def _streams_of(self, held: _Held) -> Iterator[_Stream]:
        yield self._all
        for index, key in self._indexes_of(held):
            yield index.setdefault(key, [])

    def _add(self, event: Event, raw: str) -> None:
        if self.horizon is not None and event.created_at < self.horizon:
            return
        if event.id not in self._by_id:  # checked before building what would be thrown away
            self._insert(_Held(event, raw))

    def _insert(self, held: _Held) -> None:
        if held.event.id in self._by_id:
            return
        self._by_id[held.event.id] = held
        for stream in self._streams_of(held):
            if not stream or stream[-1].key < held.key:
                stream.append(held)
            else:
                bisect.insort(stream, held, key=_sort_key)

    def _remove(self, event_id: str) -> None:
        held = self._by_id.pop(event_id, None)
        if held is None:
            return
        for stream in self._streams_of(held):
            i = bisect.bisect_left(stream, held.key, key=_sort_key)
            if i < len(stream) and stream[i] is held:
                del stream[i]
        self._prune_empty(held)

    def _prune_empty(self, held: _Held) -> None:
        """Drop the streams ``held`` leaves empty."""
        for index, key in self._indexes_of(held):
            if not index[key]:
                del index[key]

    def _evict(self) -> None:
        """Raise the horizon until a tenth of the bound is free."""
        keep = self.max_events - self.max_events // 10
        edge = self._all[len(self._all) - keep].key[0]
        # Events at the edge's created_at go too unless all of them fit.
        self._cut(edge if self._all[len(self._all) - keep - 1].key[0] < edge else edge + 1)

    def _cut(self, horizon: int) -> None:
        """Drop every event older than ``horizon``, which becomes the horizon. They are the
        oldest of every stream they are in, so each stream loses a prefix, cut at once."""
        end = bisect.bisect_left(self._all, horizon, key=_created)
        gone = self._all[:end]
        del self._all[:end]
        touched: dict[tuple[int, object], tuple[dict[Any, _Stream], object]] = {}
        for held in gone:
            del self._by_id[held.event.id]
            for index, key in self._indexes_of(held):
                touched[(id(index), key)] = (index, key)
        for index, key in touched.values():
            stream = index[key]
            del stream[: bisect.bisect_left(stream, horizon, key=_created)]
            if not stream:
                del index[key]
        self.horizon = horizon if self.horizon is None else max(self.horizon, horizon)

    # -- answering -----------------------------------------------------------------------

    def answer(self, filters: Sequence[Filter], now: int, default_limit: int) -> Rows | None:
        """``(id, raw)`` of the events ``filters`` match, as :meth:`Store.query` orders them;
        None when the mirror cannot tell (the caller asks PostgreSQL)."""
        if not self.settled or self.covered < self.writes:
            self.declined += 1
            return None
        answers: list[list[_Held]] = []
        for flt in filters:
            limit = default_limit if flt.limit is None else flt.limit
            if limit <= 0:
                continue
            found = self._answer(flt, now, limit)
            if found is None:
                self.declined += 1
                return None
            answers.append(found)
        self.answered += 1
        if len(answers) == 1:
            return [(held.id_bytes, held.raw) for held in answers[0]]
        seen: set[bytes] = set()
        rows: Rows = []
        for held in heapq.merge(*answers, key=_sort_key, reverse=True):
            if held.id_bytes not in seen:
                seen.add(held.id_bytes)
                rows.append((held.id_bytes, held.raw))
        return rows

    def _answer(self, flt: Filter, now: int, limit: int) -> list[_Held] | None:
        if flt.search is not None or any(name not in TAG_LETTERS for name, _v in flt.tags):
            return None  # ranked by PostgreSQL's search documents; tags it does not index
        # Everything at or after ``floor`` is held: an answer that ends above it is whole.
        floor = self.horizon
        if floor is not None and flt.since is not None and flt.since >= floor:
            floor = None
        if flt.ids is not None:
            listed = [self._by_id[i] for i in flt.ids if i in self._by_id]
            if len(listed) == len(flt.ids):
                floor = None  # every id asked for is here
            elif floor is not None:
                return None
            listed.sort(key=_sort_key, reverse=True)
            candidates: Iterable[_Held] = listed
            check = flt
        else:
            chosen = self._streams(flt, limit)
            if chosen is None:
                return None
            streams, check = chosen
            if len(streams) == 1:
                candidates = _newest(streams[0], flt.until)
            else:
                candidates = _dedup(
                    heapq.merge(
                        *(_newest(s, flt.until) for s in streams), key=_sort_key, reverse=True
                    )
                )
        found: list[_Held] = []
        since = flt.since
        checked = bool(
            check.ids is not None or check.authors is not None or check.kinds is not None
            or check.tags or check.since is not None or check.until is not None
        )  # fmt: skip
        for held in candidates:
            if since is not None and held.key[0] < since:
                return found
            if held.expires is not None and held.expires <= now:
                continue
            if not checked or matches(check, held.event):
                found.append(held)
                if len(found) >= limit:
                    return found
        return found if floor is None else None

    def _streams(self, flt: Filter, limit: int) -> tuple[list[_Stream], Filter] | None:
        """The streams to read for ``flt`` and what is left of ``flt`` to check on their
        events (each stream's own condition holds for all of them, and the reading bounds
        ``since`` and ``until``); None when the cheapest reading merges more than
        :data:`MAX_MERGED_STREAMS` streams.

        A reading costs the events it scans until ``limit`` of them match, estimated from
        the smallest reading (no more events than it holds can match), plus a little per
        stream merged."""
        empty: _Stream = []
        # Each reading: its streams, and what it makes true (the fields or the tag, by
        # position, left out of the check); the rest of the filter is built for the one chosen.
        options: list[tuple[list[_Stream], tuple[str, ...], int]] = []
        authors, kinds = flt.authors, flt.kinds
        if authors is not None and kinds is not None:
            if len(authors) * len(kinds) <= MAX_MERGED_STREAMS:
                pairs = itertools.product(authors, kinds)
                streams = [self._author_kinds.get(pair, empty) for pair in pairs]
                options.append((streams, ("authors", "kinds"), -1))
        if authors is not None:
            options.append(([self._authors.get(a, empty) for a in authors], ("authors",), -1))
        if kinds is not None:
            options.append(([self._kinds.get(k, empty) for k in kinds], ("kinds",), -1))
        for n, (letter, values) in enumerate(flt.tags):
            options.append(([self._tags.get((letter, v), empty) for v in values], (), n))
        if not options:
            return [self._all], replace(flt, since=None, until=None, limit=None)
        readings = [[s for s in streams if s] for streams, _fields, _tag in options]
        sizes = [sum(map(len, streams)) for streams in readings]
        matching = min(sizes)

        def cost(i: int) -> float:
            scanned = sizes[i] if matching == 0 else min(sizes[i], limit * sizes[i] / matching)
            return scanned + _STREAM_COST * len(readings[i])

        best = min(range(len(readings)), key=cost)
        streams = readings[best]
        if len(streams) > MAX_MERGED_STREAMS:
            return None
        _streams, fields, tag = options[best]
        changes: dict[str, Any] = dict.fromkeys(("since", "until", "limit", *fields))
        if tag >= 0:
            changes["tags"] = flt.tags[:tag] + flt.tags[tag + 1 :]
        return streams or [empty], replace(flt, **changes)


def _dedup(merged: Iterable[_Held]) -> Iterator[_Held]:
    """Drop repeats from a merge of streams in answer order (one event is in one stream per
    tag value it carries, so repeats are adjacent)."""
    last: _Held | None = None
    for held in merged:
        if held is not last:
            yield held
            last = held


async def answer_pages(rows: Rows, page: int) -> AsyncGenerator[Rows, None]:
    """An answer already in hand, ``page`` events at a time (one empty page if none)."""
    for start in range(0, max(len(rows), 1), page):
        yield rows[start : start + page]


class MirroredStore:
    """A :class:`QueryStore` that answers from a :class:`Mirror` when it can and from
    ``inner`` (PostgreSQL) otherwise; COUNT and NIP-77 item sets always go to ``inner``."""

    def __init__(self, inner: PagedStore, mirror: Mirror, *, default_limit: int) -> None:
        self.inner = inner
        self.mirror = mirror
        self.default_limit = default_limit

    def answer_now(self, filters: Sequence[Filter], now: int) -> Rows | None:
        """The mirror's answer, or None when it cannot tell (then ask :attr:`inner`)."""
        return self.mirror.answer(filters, now, self.default_limit)

    async def query(self, filters: Sequence[Filter], now: int) -> Rows:
        rows = self.mirror.answer(filters, now, self.default_limit)
        if rows is not None:
            return rows
        return await self.inner.query(filters, now)

    async def pages(
        self, filters: Sequence[Filter], now: int, page: int
    ) -> AsyncGenerator[Rows, None]:
        rows = self.mirror.answer(filters, now, self.default_limit)
        pages = self.inner.pages(filters, now, page) if rows is None else answer_pages(rows, page)
        async for part in pages:
            yield part

    async def count(self, filters: Sequence[Filter], now: int) -> int:
        return await self.inner.count(filters, now)

    async def items(self, flt: Filter, now: int, limit: int) -> list[tuple[int, bytes]]:
        return await self.inner.items(flt, now, limit)


_: type[QueryStore] = MirroredStore
