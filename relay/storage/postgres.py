"""The event store on PostgreSQL: batch ingest, queries, counts and the log tail."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterable,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg

from relay.nostr.event import Event, KindClass, d_tag, expiration, is_hex64, kind_class
from relay.nostr.filters import FITNESS_TAG_NAMES, Filter
from relay.nostr.replies import IngestStatus
from relay.storage.eventcache import EventCache
from relay.storage.indexing import (
    FITNESS_INDEXING,
    TAG_LETTERS,
    Indexing,
    document_args,
    tag_rows,
)
from relay.storage.logrows import Appended, Removed, Stored
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries
from relay.storage.sqlfilter import (
    Query,
    compile_count,
    compile_query,
    effective_limit,
    tag_key,
)

if TYPE_CHECKING:
    from relay.storage.replicas import Replicas

__all__ = [
    "PLANNED_PER_RUN",
    "SESSION_SETTINGS",
    "Appended",
    "Indexing",
    "IngestStatus",
    "PoolBusy",
    "Removed",
    "Store",
    "Stored",
    "create_pool",
]

_Q = load_queries("events.sql")
_WAL = load_queries("replicas.sql")["wal_position"]
T = TypeVar("T")


class PoolBusy(Exception):
    """No pooled connection came free within the pool wait: the relay is busy."""


SESSION_SETTINGS = {
    "plan_cache_mode": "force_generic_plan",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "enable_bitmapscan": "off",
}
"""Settings of every relay connection.

- Generic plans for prepared filter queries: planning cost as much as running the query
  (0.1-0.4 ms each at 100k events), and most filter shapes compile to SQL whose one
  sensible plan does not depend on the values (see :mod:`relay.storage.sqlfilter`). The
  others, where a generic plan falls into the trap of being fitted to no value in particular
  (a hundred times slower for 40 hashtags), run with ``SET LOCAL plan_cache_mode =
  force_custom_plan`` (:func:`_fetch`). tests/storage/test_store.py checks both.
- No JIT compile time, and no parallel workers on short queries (starting workers costs
  more than a relay query takes).
- No bitmap scans. A relay query wants the newest ``limit`` rows, which an index scan in
  ``created_at`` order stops after; a bitmap scan reads every match and sorts them, and the
  planner picks it whenever it underestimates the matches (one author's 200,000 notes
  estimated at 17 rows took 120 ms instead of 1.4 ms).
"""


PLANNED_PER_RUN = {**SESSION_SETTINGS, "plan_cache_mode": "force_custom_plan"}
"""Settings for connections whose queries are better planned for their values every run:
the export (its optional conditions fold away only then) and the indexer (its batch queries
cost far more than planning them)."""


async def _keep_session(_conn: Conn) -> None:
    """Pool release without asyncpg's reset statement.

    asyncpg still rolls back an open transaction and drops listeners on release; what the
    default reset adds (``RESET ALL``, ``UNLISTEN *``, unlocking advisory locks, closing
    cursors) is a round trip per query for state the relay never leaves on a pooled
    connection: settings come from the startup packet, LISTEN has its own connection and
    the relay takes no session-level locks (its locks are table locks, released at commit).
    """


async def _fetch(conn: Conn, query: Query) -> list[Any]:
    """The rows of ``query``: on the connection's generic plan when the query allows it,
    else with a plan made for its values (for this transaction only: SET LOCAL ends with it,
    however it ends). A query that picked its rows before looking at expiration is run
    again exactly when one of them had expired."""
    if query.unless_expired is not None:
        rows = await _fetch(conn, query._replace(unless_expired=None))
        if any(row[-1] for row in rows):
            return await _fetch(conn, query.unless_expired)
        return rows
    if query.generic:
        return await conn.fetch(query.sql, *query.args)
    async with conn.transaction():
        await conn.execute(_Q["plan_search" if query.search else "plan_per_run"])
        return await conn.fetch(query.sql, *query.args)


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, statement_timeout_ms: int = 10_000
) -> asyncpg.Pool:
    """A pool whose connections have :data:`SESSION_SETTINGS` and a statement timeout."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=_keep_session,
        server_settings={
            **SESSION_SETTINGS,
            "application_name": "fitrelay",
            "statement_timeout": str(statement_timeout_ms),
        },
    )
    assert pool is not None
    return pool


def _address_targets(event: Event) -> Iterable[tuple[int, str]]:
    """``(kind, d)`` of the author's own replaceable/addressable coordinates in ``a`` tags."""
    for tag in event.tags:
        if len(tag) < 2 or tag[0] != "a":
            continue
        parts = tag[1].split(":", 2)
        if len(parts) != 3 or parts[1] != event.pubkey or not parts[0].isdigit():
            continue
        kind = int(parts[0])
        cls = kind_class(kind)
        if cls is KindClass.REPLACEABLE:
            yield kind, ""
        elif cls is KindClass.ADDRESSABLE:
            yield kind, tag_key(parts[2])


_STATUSES = {status.value: status for status in IngestStatus}
"""IngestStatus by code, cheaper than calling the enum once per event."""


def ingest_args(
    events: Sequence[Event], raws: Sequence[str], indexed: frozenset[str] = FITNESS_TAG_NAMES
) -> list[object]:
    """The fifteen arrays fitrelay_ingest takes, for events in arrival order; tags with a
    single-letter name or one of the multi-letter names ``indexed`` are indexed.

    One pass over each event's tags; a batch of a thousand events costs a few milliseconds.
    """
    names = TAG_LETTERS | indexed
    dtags: list[str | None] = []
    tag_ev: list[int] = []
    tag_names: list[str] = []
    tag_values: list[str] = []
    del_ev: list[int] = []
    del_ids: list[bytes] = []
    adel_ev: list[int] = []
    adel_kinds: list[int] = []
    adel_dtags: list[str] = []
    for position, event in enumerate(events, start=1):
        cls = kind_class(event.kind)
        if cls is KindClass.REPLACEABLE:
            dtags.append("")
        elif cls is KindClass.ADDRESSABLE:
            dtags.append(tag_key(d_tag(event)))
        else:
            dtags.append(None)
        for name, value in tag_rows(event, names):
            tag_ev.append(position)
            tag_names.append(name)
            tag_values.append(value)
        if event.kind == 5:
            for tag in event.tags:
                if len(tag) >= 2 and tag[0] == "e" and is_hex64(tag[1]):
                    del_ev.append(position)
                    del_ids.append(bytes.fromhex(tag[1]))
            for kind, d in _address_targets(event):
                adel_ev.append(position)
                adel_kinds.append(kind)
                adel_dtags.append(d)
    return [
        [bytes.fromhex(event.id) for event in events],
        [bytes.fromhex(event.pubkey) for event in events],
        [event.kind for event in events],
        [event.created_at for event in events],
        dtags,
        [expiration(event) for event in events],
        list(raws),
        tag_ev, tag_names, tag_values, del_ev, del_ids, adel_ev, adel_kinds, adel_dtags,
    ]  # fmt: skip


def _merge(results: Sequence[Sequence[Any]], *, ranked: bool = False) -> Sequence[Any]:
    """Merge per-filter rows (``created_at, id, ...``, each list newest first) into one
    list, newest first with ties by lowest id, each event once. ``ranked`` (some filter is
    a NIP-50 search, whose rows come best first): the lists one after another instead, in
    filter order, each event once where it first appears."""
    if len(results) == 1:
        return results[0]
    seen: set[bytes] = set()
    merged: list[Any] = []
    rows: Iterable[Any] = (
        (row for result in results for row in result)
        if ranked
        else heapq.merge(*results, key=lambda row: (-row[0], row[1]))
    )
    for row in rows:
        if row[1] not in seen:
            seen.add(row[1])
            merged.append(row)
    return merged


class Store:
    """Everything the relay asks of PostgreSQL. One instance per process.

    Client queries (REQ, COUNT) run on ``pool``; the writer, the log tail and the sweep on
    ``write_pool`` when one is given, so a flood of queries never queues in front of a
    commit, and each pool has the statement timeout of its kind of work. With ``replicas``,
    client queries run on a hot standby when one has replayed what this process has acted
    on (:mod:`relay.storage.replicas`), and each commit notes its WAL position there.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        default_limit: int,
        events: EventCache | None = None,
        write_pool: asyncpg.Pool | None = None,
        pool_wait: float | None = None,
        query_timeout: float | None = None,
        on_ingest: Callable[[], None] | None = None,
        replicas: Replicas | None = None,
        indexing: Indexing = FITNESS_INDEXING,
        partitioned: bool = False,
    ) -> None:
        self.pool = pool
        self.partitioned = partitioned
        """events is partitioned (relay.storage.partition): ids are looked up in event_keys."""
        self.on_ingest = on_ingest
        """Called after every :meth:`ingest`, committed or not (the mirror then waits for a
        snapshot taken after it)."""
        self.replicas = replicas
        self.indexing = indexing
        self.pool_wait = pool_wait
        """Longest wait for a query connection before :class:`PoolBusy` (None: no bound)."""
        self.query_timeout = query_timeout
        """Longest a query holds its connection before TimeoutError (None: no bound); the
        wait for the connection is not part of it."""
        self.write_pool = write_pool if write_pool is not None else pool
        self.default_limit = default_limit
        self.events = events
        """Event JSON held in memory: queries then read only ids from PostgreSQL."""
        self.waiting = 0
        """Tasks waiting for a pooled connection right now."""

    @contextlib.asynccontextmanager
    async def _connection(
        self, pool: asyncpg.Pool | None = None, *, bounded: bool = True
    ) -> AsyncIterator[Conn]:
        """A connection of the query pool (or of ``pool``, a replica's); counts the wait for
        it (pool exhaustion shows up there). ``bounded``: the wait raises :class:`PoolBusy`
        after ``pool_wait`` and the work TimeoutError after ``query_timeout`` from when it
        holds the connection."""
        pool = self.pool if pool is None else pool
        self.waiting += 1
        try:
            conn = await pool.acquire(timeout=self.pool_wait if bounded else None)
        except TimeoutError:
            raise PoolBusy from None
        finally:
            self.waiting -= 1
        try:
            if bounded and self.query_timeout is not None:
                async with asyncio.timeout(self.query_timeout):
                    yield conn
            else:
                yield conn
        finally:
            await pool.release(conn)

    async def _read(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """``work`` on a connection for a client query: of a replica that may answer it when
        there are replicas, else of the query pool."""
        if self.replicas is not None:
            return await self.replicas.read(work, self._connection)
        async with self._connection() as conn:
            return await work(conn)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[Conn]:
        """A connection of the write pool (the query pool when there is no other)."""
        if self.write_pool is self.pool:
            async with self._connection(bounded=False) as conn:
                yield conn
            return
        async with self.write_pool.acquire() as conn:
            yield conn

    async def ingest(self, events: Sequence[Event], raws: Sequence[str]) -> list[IngestStatus]:
        """Store a batch in one transaction; one status per event, in order."""
        indexing = self.indexing
        args = ingest_args(events, raws, indexing.tag_names)
        documents = document_args(events, indexing.search_kinds)
        try:
            async with self._writing() as conn:
                if documents is None:
                    codes = await conn.fetchval(_Q["ingest"], *args)
                else:
                    codes = await conn.fetchval(_Q["ingest_documents"], *args, *documents)
                if self.replicas is not None:
                    # Committed (one statement): any position read now is at or past it.
                    self.replicas.note(int(await conn.fetchval(_WAL)))
        finally:
            if self.on_ingest is not None:
                self.on_ingest()
        statuses = [_STATUSES[code] for code in codes]
        if self.events is not None:
            ids = cast(list[bytes], args[0])
            for event_id, raw, status in zip(ids, raws, statuses, strict=True):
                if status is IngestStatus.STORED:
                    self.events.put(event_id, raw)
        return statuses

    async def query(self, filters: Sequence[Filter], now: int) -> list[tuple[bytes, str]]:
        """``(id, raw)`` of stored events matching any filter: newest first, ties by lowest
        id, each once."""
        events = self.events

        async def work(conn: Conn) -> list[tuple[bytes, str]]:
            if events is not None:
                rows = await self._select(conn, filters, now, raw=False)
                answer = await self._page(conn, rows)
                if len(answer) == len(rows):
                    return answer
                # One was removed since the query found it: run it again with the JSON.
            rows = await self._select(conn, filters, now, raw=True)
            return [(row[1], row[2]) for row in rows]

        return await self._read(work)

    def answer_bound(self, filters: Sequence[Filter]) -> int:
        """Most events ``filters`` can answer with: the sum of their limits."""
        return sum(effective_limit(flt, self.default_limit) for flt in filters)

    async def pages(
        self, filters: Sequence[Filter], now: int, page: int
    ) -> AsyncGenerator[list[tuple[bytes, str]], None]:
        """The answer of :meth:`query` in pages of at most ``page`` events, in order.

        Filters whose limits allow no more than ``page`` events are one :meth:`query` (one
        round trip for the common REQ). Otherwise the ids are selected first (bounded by the
        limits), then each page's JSON is taken from the event cache or read by id and
        created_at on a connection held only for that read: no connection is held, and no more than
        one page is in memory, while the caller waits for its client to read. An event
        removed between the two reads is left out, as if the query had run a moment later
        (its removal reaches live subscribers through the log either way).
        """
        if self.answer_bound(filters) <= page:
            yield await self.query(filters, now)
            return

        async def work(conn: Conn) -> tuple[Sequence[Any], list[tuple[bytes, str]]]:
            rows = await self._select(conn, filters, now, raw=False)
            return rows, await self._page(conn, rows[:page])

        rows, first = await self._read(work)
        yield first
        for start in range(page, len(rows), page):
            yield await self._page(None, rows[start : start + page])

    async def _page(self, conn: Conn | None, rows: Sequence[Any]) -> list[tuple[bytes, str]]:
        """``(id, raw)`` of those of ``rows`` (``created_at, id``) still stored, in order:
        from the event cache when there is one, the rest by key (on ``conn``, else a
        connection of the pool's held for this read only) and then kept in the cache."""
        cache = self.events
        ids = [row[1] for row in rows]
        held: list[str | None] = cache.lookup(ids) if cache is not None else [None] * len(ids)
        missing = [row for row, raw in zip(rows, held, strict=True) if raw is None]
        read: dict[bytes, str] = {}
        if missing:
            keys = ([row[1] for row in missing], [row[0] for row in missing])
            if conn is None:
                found = await self._read(lambda own: own.fetch(_Q["raws"], *keys))
            else:
                found = await conn.fetch(_Q["raws"], *keys)
            read = {row[0]: row[1] for row in found}
            if cache is not None:
                for event_id, text in read.items():
                    cache.put(event_id, text)
        answer: list[tuple[bytes, str]] = []
        for event_id, held_raw in zip(ids, held, strict=True):
            found_raw = read.get(event_id) if held_raw is None else held_raw
            if found_raw is not None:
                answer.append((event_id, found_raw))
        return answer

    async def _select(
        self, conn: Conn, filters: Sequence[Filter], now: int, *, raw: bool
    ) -> Sequence[Any]:
        """The rows (``created_at, id`` and ``raw`` if asked) answering ``filters``."""
        results: list[Sequence[Any]] = []
        for flt in filters:
            limit = effective_limit(flt, self.default_limit)
            if limit > 0:
                query = compile_query(flt, now, limit, raw=raw, keys=self.partitioned)
                results.append(await _fetch(conn, query))
        ranked = any(flt.search is not None for flt in filters)
        return _merge(results, ranked=ranked) if results else []

    async def items(self, flt: Filter, now: int, limit: int) -> list[tuple[int, bytes]]:
        """``(created_at, id)`` of the newest ``limit`` events matching ``flt``, in any order:
        the set a NIP-77 sync reconciles, under exactly REQ's rules (deletion, expiration)."""
        query = compile_query(flt, now, limit, raw=False, keys=self.partitioned)
        rows = await self._read(lambda conn: _fetch(conn, query))
        return [(row[0], row[1]) for row in rows]

    async def count(self, filters: Sequence[Filter], now: int) -> int:
        query = compile_count(filters, now)
        rows = await self._read(lambda conn: _fetch(conn, query))
        return int(rows[0][0])

    async def wal_position(self) -> int:
        """The primary's WAL insert position (see sql/queries/replicas.sql)."""
        async with self._writing() as conn:
            return int(await conn.fetchval(_WAL))

    async def head_seq(self) -> int:
        async with self._writing() as conn:
            return int(await conn.fetchval(_Q["head_seq"]))

    async def tail(self, after: int, limit: int) -> list[Stored]:
        async with self._writing() as conn:
            rows = await conn.fetch(_Q["tail"], after, limit)
        return [Stored(row[0], row[1]) for row in rows]

    async def tail_keys(self, after: int, limit: int) -> list[Appended]:
        async with self._writing() as conn:
            rows = await conn.fetch(_Q["tail_keys"], after, limit)
        return [Appended(row[0], row[1].hex(), row[2], row[3].hex()) for row in rows]

    async def removals_head(self) -> int:
        async with self._writing() as conn:
            return int(await conn.fetchval(_Q["removals_head"]))

    async def removals(self, after: int, limit: int) -> list[Removed]:
        """Removal log entries after ``after``, in order."""
        async with self._writing() as conn:
            rows = await conn.fetch(_Q["removals"], after, limit)
        return [Removed(row[0], row[1], row[2].hex(), row[3]) for row in rows]

    async def log_snapshot(
        self, after: int, removals_after: int, limit: int, held: Container[str] = ()
    ) -> tuple[list[Removed], list[Stored]]:
        """Up to ``limit`` removals after ``removals_after`` and events appended after
        ``after``, both in log order and read in one snapshot, each event with its id. The
        events whose ids are in ``held`` (the caller has them: this process wrote them) come
        without their JSON, which is then read only for the others."""
        async with self._writing() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                removed = await conn.fetch(_Q["removals"], removals_after, limit)
                keys = [
                    (seq, key.hex()) for seq, key in await conn.fetch(_Q["tail_ids"], after, limit)
                ]
                wanted = [seq for seq, event_id in keys if event_id not in held]
                raws: dict[int, str] = (
                    dict(await conn.fetch(_Q["raws_at"], wanted)) if wanted else {}
                )
        return (
            [Removed(row[0], row[1], row[2].hex(), row[3]) for row in removed],
            [Stored(seq, raws.get(seq, ""), event_id) for seq, event_id in keys],
        )

    async def newest_snapshot(self, limit: int) -> tuple[int, int, list[str]]:
        """The log's two heads and the JSON of the ``limit`` newest events, in one
        snapshot."""
        async with self._writing() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = int(await conn.fetchval(_Q["head_seq"]))
                removals = int(await conn.fetchval(_Q["removals_head"]))
                raws = [row[0] for row in await conn.fetch(_Q["newest"], limit)]
        return head, removals, raws

    async def purge_expired(self, now: int) -> int:
        async with self._writing() as conn, conn.transaction():
            await conn.execute(_Q["lock_log"])
            return int(await conn.fetchval(_Q["purge_expired"], now))
