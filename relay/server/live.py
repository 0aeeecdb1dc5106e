"""Live fan-out: an inverted index of open subscriptions, fed by the log tail.

Every stored event reaches subscribers the same way, whoever wrote it: the tail reads
``events`` after the last position it saw (woken by the local writer or by NOTIFY from other
processes) and hands each event to :meth:`LiveIndex.dispatch`. Ephemeral events, which are
never stored, are dispatched directly by the connection that received them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import Filter, matches_any
from relay.nostr.messages import encode_event
from relay.storage.cache import QueryCache
from relay.storage.mirror import Mirror
from relay.storage.postgres import Removed, Store, Stored

__all__ = ["LiveIndex", "LogTail", "Subscriber"]

log = logging.getLogger(__name__)

_Key = tuple[str, object]

RELOAD_AFTER_SECONDS = 30.0
"""A mirror whose log tail comes back to the log this long after being woken is loaded
again: the indexer prunes removals a minute old, so some may have gone unread."""

_END = 1 << 62


class Subscriber(Protocol):
    """What the index delivers to: a connection."""

    def deliver(self, sub_id: str, event_id: str, data: bytes, seq: int | None) -> bool:
        """Queue a live event; False when it was held back or already sent as stored."""
        ...


def _index_keys(flt: Filter) -> list[_Key]:
    """The keys one filter is filed under: its most selective field. A search filter
    without ids, authors or tags is filed under the searchable kinds it accepts (an event of
    another kind has no search document and never matches it)."""
    if flt.ids is not None:
        return [("id", v) for v in flt.ids]
    if flt.authors is not None:
        return [("author", v) for v in flt.authors]
    if flt.tags:
        name, values = flt.tags[0]
        return [("tag", (name, v)) for v in values]
    if flt.search is not None:
        kinds = flt.search.kinds if flt.kinds is None else flt.kinds & flt.search.kinds
        return [("kind", v) for v in kinds]
    if flt.kinds is not None:
        return [("kind", v) for v in flt.kinds]
    return [("all", None)]


def _event_keys(event: Event) -> Iterator[_Key]:
    yield ("id", event.id)
    yield ("author", event.pubkey)
    yield ("kind", event.kind)
    yield ("all", None)
    for tag in event.tags:
        # Every name: a filter is filed only under a name the relay answers (a single letter
        # or an indexed multi-letter one), so the others find nothing.
        if len(tag) >= 2:
            yield ("tag", (tag[0], tag[1]))


class _Listing:
    __slots__ = ("filters", "sub_id", "subscriber")

    def __init__(self, subscriber: Subscriber, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self.subscriber = subscriber
        self.sub_id = sub_id
        self.filters = filters


class LiveIndex:
    """Open subscriptions, looked up by id, author, tag value or kind instead of scanned."""

    def __init__(self, delivered: Callable[[int, float | None], None] | None = None) -> None:
        """``delivered`` is told, after each dispatch that sent anything, how many live
        events went out and their delay (seconds since the event was committed, or received
        for an ephemeral one; None when unknown)."""
        self.delivered = delivered
        self._by_key: defaultdict[_Key, set[_Listing]] = defaultdict(set)
        self._subs: dict[tuple[int, str], tuple[_Listing, list[_Key]]] = {}
        self._shared: dict[tuple[Filter, ...], tuple[Filter, ...]] = {}
        """Equal filter lists share one tuple, so a dispatch matches an event once per
        distinct list however many subscriptions hold it; ``_users`` counts the holders."""
        self._users: Counter[tuple[Filter, ...]] = Counter()

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, subscriber: Subscriber, sub_id: str, filters: tuple[Filter, ...]) -> None:
        """Open (or replace) a subscription."""
        self.remove(subscriber, sub_id)
        filters = self._shared.setdefault(filters, filters)
        self._users[filters] += 1
        sub = _Listing(subscriber, sub_id, filters)
        keys = sorted({key for flt in filters for key in _index_keys(flt)}, key=repr)
        for key in keys:
            self._by_key[key].add(sub)
        self._subs[(id(subscriber), sub_id)] = (sub, keys)

    def remove(self, subscriber: Subscriber, sub_id: str) -> None:
        entry = self._subs.pop((id(subscriber), sub_id), None)
        if entry is None:
            return
        sub, keys = entry
        self._users[sub.filters] -= 1
        if not self._users[sub.filters]:
            del self._users[sub.filters], self._shared[sub.filters]
        for key in keys:
            bucket = self._by_key[key]
            bucket.discard(sub)
            if not bucket:
                del self._by_key[key]

    def remove_all(self, subscriber: Subscriber, sub_ids: list[str]) -> None:
        for sub_id in sub_ids:
            self.remove(subscriber, sub_id)

    def dispatch(
        self, event: Event, raw: bytes, since: float | None = None, seq: int | None = None
    ) -> int:
        """Deliver ``event`` to every matching subscription; returns how many matched.

        ``since`` is the ``time.monotonic()`` at which the event became visible, ``seq`` its
        log position (None for an ephemeral event).
        """
        candidates: set[_Listing] = set()
        for key in _event_keys(event):
            bucket = self._by_key.get(key)
            if bucket:
                candidates.update(bucket)
        matched = sent = 0
        verdicts: dict[int, bool] = {}
        for sub in candidates:
            verdict = verdicts.get(id(sub.filters))
            if verdict is None:
                verdict = verdicts[id(sub.filters)] = matches_any(sub.filters, event)
            if verdict:
                matched += 1
                data = encode_event(sub.sub_id, raw)
                sent += sub.subscriber.deliver(sub.sub_id, event.id, data, seq)
        if sent and self.delivered is not None:
            self.delivered(sent, None if since is None else time.monotonic() - since)
        return matched


class LogTail:
    """A stage: reads the log after the last position seen and dispatches each new event."""

    name = "live tail"

    def __init__(
        self,
        store: Store,
        index: LiveIndex,
        *,
        page: int = 1_000,
        cache: QueryCache | None = None,
        mirror: Mirror | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.page = page
        self.cache = cache
        self.mirror = mirror
        self._reload = False
        """The mirror must start again from a fresh snapshot (a read of the log failed)."""
        self.position = 0
        """The last log position dispatched."""
        self.announced = 0
        """The highest log position announced committed (NOTIFY payloads, this tail)."""
        self.removals_position = 0
        self._local: set[str] = set()
        """Ids stored by this process's writer and not yet read back from the log: the
        writer already invalidated the cache for them, and a stored answer may hold them."""
        self._held: dict[str, tuple[Event, str]] = {}
        """With a mirror, the events of :attr:`_local` themselves, so that reading the log
        back needs neither their JSON from PostgreSQL nor decoding it again."""
        self._wake = asyncio.Event()
        self._woken_at = time.monotonic()

    async def start(self) -> None:
        if self.mirror is not None:
            self.position, self.removals_position = await self._load(self.mirror)
            self.announced = self.position
            await self._note_position(1)
            return
        self.position = self.announced = await self.store.head_seq()
        self.removals_position = await self.store.removals_head()
        await self._note_position(1)  # every position up to the head is passed

    async def _load(self, mirror: Mirror) -> tuple[int, int]:
        """Fill ``mirror`` from a snapshot of the newest events; the log's heads in it."""
        began = mirror.writes
        head, removals, raws = await self.store.newest_snapshot(mirror.max_events)
        try:
            newest = [(decode_event(raw.encode()), raw) for raw in raws]
        except Exception:
            log.exception("mirror: a stored event does not decode; queries go to PostgreSQL")
            mirror.give_up()
        else:
            mirror.load(newest, limit=mirror.max_events, began_after=began)
        return head, removals

    def notified(self, payload: str) -> None:
        """A NOTIFY from a committing process (payload: its highest seq, may be empty)."""
        if payload.isdigit():
            self.announced = max(self.announced, int(payload))
        self.wake()

    def known_committed(self) -> int:
        """Every log position up to this one is committed and visible to a new query.

        With reads on replicas, only what this tail has read: a query there is guaranteed to
        see no more than that (the horizon of :mod:`relay.storage.replicas`), and positions
        past it still reach the subscription live."""
        if self.store.replicas is not None:
            return self.position
        return max(self.announced, self.position)

    async def _note_position(self, read: int) -> None:
        """With reads on replicas: ``read`` entries were just read from the log, and before
        they are dispatched (and the position passes them), the primary's WAL position,
        which is at or past all their commits, joins the read horizon."""
        replicas = self.store.replicas
        if replicas is not None and read:
            replicas.note(await self.store.wal_position())

    def undispatched_local(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` this process stored and the tail has not dispatched yet."""
        local = self._local
        return {i for i in ids if i in local} if local else set()

    def written(self, events: list[Event]) -> None:
        """The local writer tried to store ``events`` (called before any OK, whatever came
        of it: a lost connection may have committed, and an event refused as deleted can
        still remove the version it replaced): drop the cached answers they may change.
        Other processes' writes reach the cache through the log, in :meth:`catch_up`."""
        if self.cache is not None:
            for event in events:
                self.cache.invalidate_event(event.kind, event.pubkey)
        if self.mirror is not None:
            self.wake()  # the store told the mirror; its next snapshot must follow

    def committed(self, stored: list[tuple[Event, str]]) -> None:
        """The local writer stored these events, each with its JSON (and invalidated the
        cache for them).

        Until the tail reads them back, a query may already have answered with them: the
        connection learns which from :meth:`undispatched_local` so that they are not sent
        again as live news, whether or not the query cache is on."""
        self._local.update(event.id for event, _raw in stored)
        if self.mirror is not None:
            self._held.update((event.id, (event, raw)) for event, raw in stored)
        self.wake()

    def wake(self) -> None:
        if not self._wake.is_set():
            self._woken_at = time.monotonic()
        self._wake.set()

    async def catch_up(self) -> None:
        # Local commits made before this read began are visible to it; those it does not meet
        # were removed (replaced, deleted) before the tail reached them and never will be.
        earlier = set(self._local) if self._local else None
        await self._read_log()
        if earlier:
            self._local -= earlier
            for event_id in earlier:
                self._held.pop(event_id, None)

    async def _read_log(self) -> None:
        since = self._woken_at
        if self.mirror is not None:
            try:
                await self._read_mirrored(self.mirror, since)
            except BaseException:
                self.mirror.settled = False
                self._reload = True
                raise
            return
        if self.cache is not None:
            await self._removals(self.cache)
        while True:
            if not self.index:
                # Nobody to deliver to: the positions, and who wrote what for the cache, do.
                appended = await self.store.tail_keys(self.position, self.page)
                await self._note_position(len(appended))
                if self.index:
                    continue  # a subscription came meanwhile: read these again, events too
                for entry in appended:
                    if not self._was_local(entry.event_id) and self.cache is not None:
                        self.cache.invalidate_event(entry.kind, entry.pubkey)
                    self.position = entry.seq
                if len(appended) < self.page:
                    return
                continue
            rows = await self.store.tail(self.position, self.page)
            await self._note_position(len(rows))
            for row in rows:
                raw = row.raw.encode()
                try:
                    event = decode_event(raw)
                except Exception:
                    self._undecodable(row.seq)
                else:
                    if not self._was_local(event.id) and self.cache is not None:
                        # Written by another process: this is its first sign here.
                        self.cache.invalidate_event(event.kind, event.pubkey)
                    self.index.dispatch(event, raw, since, row.seq)
                self.position = row.seq
            if len(rows) < self.page:
                return

    async def _read_mirrored(self, mirror: Mirror, since: float) -> None:
        """Read the log in snapshots, apply each stretch to ``mirror``, then invalidate and
        dispatch it. A stretch ends where a full page of either half ends, so that what is
        applied is the database as of some moment; the mirror settles when a snapshot's
        reads come back short."""
        if self._reload or time.monotonic() - since > RELOAD_AFTER_SECONDS:
            # Removals this old may have been pruned from the log unread.
            await self._load(mirror)
            self._reload = False
        while True:
            began = mirror.writes
            removed, rows = await self.store.log_snapshot(
                self.position, self.removals_position, self.page, self._held
            )
            bound = min(
                removed[-1].seq if len(removed) == self.page else _END,
                rows[-1].seq if len(rows) == self.page else _END,
            )
            removed = [r for r in removed if r.seq <= bound]
            kept = [row for row in rows if row.seq <= bound]
            appended = self._decoded(kept)
            mirror.apply(
                ((event, row.raw) for row, event, _raw in appended),
                [r.event_id for r in removed],
                settles=bound == _END,
                began_after=began,
            )
            await self._note_position(len(appended))
            self._dispatch_stretch(removed, appended, since)
            if kept:  # past an event that did not decode too, as the plain path goes
                self.position = kept[-1].seq
            if bound == _END:
                return

    def _decoded(self, rows: list[Stored]) -> list[tuple[Stored, Event, bytes]]:
        decoded: list[tuple[Stored, Event, bytes]] = []
        held = self._held
        for row in rows:
            if not row.raw:  # written here: the event and its JSON are held
                event, text = held.pop(row.event_id)
                decoded.append((Stored(row.seq, text, row.event_id), event, text.encode()))
                continue
            raw = row.raw.encode()
            try:
                decoded.append((row, decode_event(raw), raw))
            except Exception:
                self._undecodable(row.seq)
        return decoded

    def _undecodable(self, seq: int) -> None:
        """The stored event at ``seq`` does not decode: nothing cached or mirrored can be
        trusted to know what it changed."""
        log.exception("live: stored event at seq %d does not decode", seq)
        if self.cache is not None:
            self.cache.invalidate_all()
        if self.mirror is not None:
            self.mirror.give_up()

    def _dispatch_stretch(
        self, removed: list[Removed], appended: list[tuple[Stored, Event, bytes]], since: float
    ) -> None:
        cache = self.cache
        for removal in removed:
            if cache is not None:
                cache.invalidate_event(removal.kind, removal.pubkey)
            self.removals_position = removal.seq
        for row, event, raw in appended:
            if not self._was_local(event.id) and cache is not None:
                cache.invalidate_event(event.kind, event.pubkey)
            self.index.dispatch(event, raw, since, row.seq)
            self.position = row.seq

    def _was_local(self, event_id: str) -> bool:
        if event_id in self._local:
            self._local.discard(event_id)
            return True
        return False

    async def _removals(self, cache: QueryCache) -> None:
        """Removals by other processes that no insertion announces (a version removed by
        the late arrival of its deleted successor): drop the answers they touch."""
        while True:
            removals = await self.store.removals(self.removals_position, self.page)
            for removal in removals:
                cache.invalidate_event(removal.kind, removal.pubkey)
                self.removals_position = removal.seq
            if len(removals) < self.page:
                return

    async def stop(self) -> None:
        """Nothing to drain: what is not dispatched now is not news to anyone left."""

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live: reading the log failed; retrying on the next wake-up")
