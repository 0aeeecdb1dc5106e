"""The indexer loop: read the log after the checkpoint, apply it, commit rows and checkpoint
together; and the full rebuild.

One transaction per batch (REPEATABLE READ, so the log head, the entries and the tables are
read from one snapshot) holds the rows and the new checkpoint, so a crash or a re-run
changes nothing. The process's commit listener wakes it (:meth:`Indexer.wake`). Each batch
and a whole reindex begin by locking ``fitness.indexer_state`` (a table lock only the relay's
role may take): one writer of the fitness tables at a time, so several indexers take turns
batch by batch, and a reindex takes over between two batches and hands back when it commits.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from indexer.bulk import NetEffect, Unrepresentable, apply_net_effect
from indexer.model import Issue
from indexer.store import FitnessStore
from indexer.transform import Outcome, derive
from relay.nostr.event import decode_event
from relay.nostr.kinds import FITNESS_KINDS
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.migrate import Conn, migrate
from relay.storage.postgres import PLANNED_PER_RUN
from relay.storage.queries import load_queries

__all__ = ["BULK_MIN", "Indexer", "IndexerStats", "apply_entries", "reindex"]

log = logging.getLogger(__name__)

_Q = load_queries("indexer.sql")
_KINDS = sorted(FITNESS_KINDS)
_NAME = "main"
# A value the database cannot store (class 22) or a constraint a row breaks (class 23):
# a property of one event, not of the connection, so it is recorded and skipped.
_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
BULK_MIN = 16
CHUNK = 1000
REFERENCE_GAUGES_EVERY = 1.0
"""Seconds between two refreshes of the unresolved-reference gauges while following."""
"""Entries folded and written together within a set-based batch."""
"""Batches of at least this many log entries are written set-based (a few statements per
table, whatever the size); shorter ones entry by entry, which costs less for a handful."""


@dataclass
class IndexerStats:
    """Counters and gauges for operators (exported as metrics by the relay)."""

    events_indexed: int = 0
    """Stored events turned into rows (or into index_errors)."""
    removals_applied: int = 0
    errors_by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    checkpoint: int = 0
    head: int = 0
    lag_seconds: float = 0.0
    """Age of the oldest stored event not indexed yet (0 when caught up)."""
    references: collections.Counter[str] = field(default_factory=collections.Counter)
    """Addresses of exercises and templates looked up while indexing, by whether the
    database had them (local: a fetch avoided) or not (missing: queued for the fetcher)."""
    unresolved_references: int = 0
    oldest_unresolved_seconds: float = 0.0
    """Time since the oldest event waiting for a resolvable dependency arrived."""

    @property
    def lag_events(self) -> int:
        """Log positions between the checkpoint and the head."""
        return max(self.head - self.checkpoint, 0)


_Entry = tuple[str, int, Outcome | None]
"""A log entry read: event id, kind, and what the event derives (None for a removal)."""


def _derive(rows: list[asyncpg.Record]) -> list[_Entry]:
    return [
        (
            row["id"].hex(),
            row["kind"],
            None if row["raw"] is None else derive(decode_event(row["raw"])),
        )
        for row in rows
    ]


async def _apply(store: FitnessStore, entry: _Entry) -> list[Issue]:
    event_id, kind, outcome = entry
    if outcome is None:
        await store.remove_event(event_id, kind)
        return []
    await store.write(outcome.row)
    await store.write_issues(event_id, kind, outcome.issues)
    return list(outcome.issues)


async def _apply_each(
    conn: Conn, entries: list[_Entry], references: collections.Counter[str]
) -> list[Issue]:
    """Entry by entry; when the database refuses a row, again one entry per savepoint.
    ``references`` counts how the references written were resolved (local or missing)."""
    store = FitnessStore(conn)
    issues: list[Issue] = []
    try:
        async with conn.transaction():
            for entry in entries:
                issues += await _apply(store, entry)
    except _REFUSED:
        issues = []
        store.references.clear()
        for entry in entries:
            try:
                async with conn.transaction():
                    issues += await _apply(store, entry)
            except _REFUSED as exc:
                refused = Issue("storage_error", f"{type(exc).__name__}: {exc}")
                await store.write_issues(entry[0], entry[1], [refused])
                issues.append(refused)
    references.update(store.references)
    return issues


async def _apply_net(conn: Conn, entries: list[_Entry]) -> list[Issue] | None:
    """The run folded into its net effect and written set-based (:mod:`indexer.bulk`);
    None, with nothing changed, when some row could not go that way."""
    net = NetEffect()
    issues: list[Issue] = []
    for event_id, kind, outcome in entries:
        if outcome is None:
            net.remove(event_id, kind)
        else:
            net.insert(event_id, kind, outcome)
            issues += outcome.issues
    try:
        async with conn.transaction():
            await apply_net_effect(conn, net)
    except (*_REFUSED, Unrepresentable) as exc:
        log.debug("indexer: batch applied entry by entry (%s)", exc)
        return None
    return issues


async def _apply_chunks(
    conn: Conn, rows: list[asyncpg.Record], references: collections.Counter[str]
) -> list[Issue]:
    """Set-based, :data:`CHUNK` entries at a time, each chunk parsed in the parser thread
    while the previous one is written: the database works while Python parses."""
    loop = asyncio.get_running_loop()
    chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
    pending = loop.run_in_executor(_parser(), _derive, chunks[0])
    issues: list[Issue] = []
    for i in range(len(chunks)):
        entries = await pending
        if i + 1 < len(chunks):
            pending = loop.run_in_executor(_parser(), _derive, chunks[i + 1])
        applied = await _apply_net(conn, entries)
        issues += applied if applied is not None else await _apply_each(conn, entries, references)
    return issues


_PARSER: concurrent.futures.ThreadPoolExecutor | None = None


def _parser() -> concurrent.futures.ThreadPoolExecutor:
    """The thread that parses chunks ahead of the writes (parsing is pure, so it may run
    beside the event loop)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="indexer-parse")
    return _PARSER


async def apply_entries(
    conn: Conn,
    rows: list[asyncpg.Record],
    stats: IndexerStats | None = None,
    *,
    bulk_min: int = BULK_MIN,
) -> None:
    """Apply log entries (``seq, id, kind, raw``; raw NULL for a removal) in order.

    Runs inside the caller's transaction. A run of at least ``bulk_min`` entries is written
    set-based (:mod:`indexer.bulk`); a shorter one, or one with a row the database refuses,
    entry by entry, and then when the database refuses a row (a value it cannot store) the
    run is re-applied one entry at a time and the refused event gets an ``index_errors`` row
    instead, so one bad event never stalls the log. Both ways leave the same tables.
    """
    references: collections.Counter[str] = collections.Counter()
    if len(rows) < bulk_min:
        issues = await _apply_each(conn, _derive(rows), references)
    else:
        issues = await _apply_chunks(conn, rows, references)
    if stats:
        stats.removals_applied += sum(1 for row in rows if row["raw"] is None)
        stats.events_indexed += sum(1 for row in rows if row["raw"] is not None)
        stats.errors_by_reason.update(issue.reason for issue in issues)
        stats.references.update(references)


async def _connect(dsn: str) -> asyncpg.Connection[Any]:
    return await asyncpg.connect(
        dsn, server_settings={**PLANNED_PER_RUN, "application_name": "fitrelay-indexer"}
    )


class Indexer:
    """A stage: follows the log and keeps the fitness tables current."""

    name = "indexer"

    def __init__(self, dsn: str, *, batch_size: int = 500, bulk_min: int = BULK_MIN) -> None:
        self.dsn = dsn
        self.batch_size = batch_size
        self.bulk_min = bulk_min
        self.stats = IndexerStats()
        self._wake = asyncio.Event()
        self._references_stale = asyncio.Event()
        self._conn: asyncpg.Connection[Any] | None = None
        self.after_catch_up: list[Callable[[], None]] = []
        """Called each time the indexer has caught up with the log: the fetcher's wake-up, so
        that references indexed now are looked for at once, not one fetcher interval later."""

    async def step(self, conn: Conn) -> bool:
        """Apply one batch; True when more entries may be waiting."""
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute(_Q["lock_indexer"])  # before the snapshot: see the last holder's
            head = int(await conn.fetchval(_Q["log_head"]))
            checkpoint = int(await conn.fetchval(_Q["checkpoint"], _NAME) or 0)
            rows = await conn.fetch(_Q["log_entries"], checkpoint, head, _KINDS, self.batch_size)
            await apply_entries(conn, rows, self.stats, bulk_min=self.bulk_min)
            full = len(rows) == self.batch_size
            done = rows[-1]["seq"] if full else head
            if done != checkpoint:
                await conn.execute(_Q["save_checkpoint"], _NAME, done)
                await conn.execute(_Q["prune_removals"], done)
        self.stats.checkpoint, self.stats.head = done, head
        return full

    async def catch_up(self, conn: Conn) -> None:
        """Apply batches until the log head seen at the start of the last one is reached,
        then refresh every gauge."""
        await self._apply_batches(conn)
        await self._refresh_references(conn)

    async def _apply_batches(self, conn: Conn) -> None:
        while await self.step(conn):
            pass
        received = await conn.fetchval(_Q["oldest_unindexed"], self.stats.checkpoint)
        self.stats.lag_seconds = 0.0 if received is None else time.time() - received.timestamp()

    async def _refresh_references(self, conn: Conn) -> None:
        """The unresolved-reference gauges (scans of every unresolved set and record), both
        set together, so that a scrape between the two reads never pairs a new count with an
        old age."""
        count = int(await conn.fetchval(_Q["count_unresolved"]))
        oldest = await conn.fetchval(_Q["oldest_unresolved"])
        self.stats.unresolved_references = count
        self.stats.oldest_unresolved_seconds = (
            0.0 if oldest is None else max(time.time() - oldest.timestamp(), 0.0)
        )

    def wake(self, _payload: str = "") -> None:
        """Something was committed (a commit listener's callback): look at the log."""
        self._wake.set()

    async def start(self) -> None:
        """Nothing to set up: :meth:`run` connects, and retries until it can."""

    async def stop(self) -> None:
        """Nothing to drain: a batch is one transaction, rolled back if cancelled."""

    async def run(self, *, on_caught_up: Callable[[], None] | None = None) -> None:
        """Index forever: catch up, then follow wake-ups.

        Errors from the database are logged and retried (the batch rolls back whole); the
        loop ends only when cancelled.
        """
        while True:
            try:
                await self._follow(on_caught_up)
            except DATABASE_ERRORS as exc:
                log.warning("indexer: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _follow(self, on_caught_up: Callable[[], None] | None) -> None:
        conn = await _connect(self.dsn)
        references = asyncio.create_task(self._watch_references())
        try:
            await migrate(conn)
            log.info("indexer: following the log")
            while True:
                self._wake.clear()
                await self._apply_batches(conn)
                self._references_stale.set()
                if on_caught_up:
                    on_caught_up()
                for callback in self.after_catch_up:
                    callback()
                await self._wake.wait()
        finally:
            references.cancel()
            await asyncio.gather(references, return_exceptions=True)
            await conn.close()

    async def _watch_references(self) -> None:
        """Refresh the unresolved-reference gauges after batches, on a connection of their
        own and at most every :data:`REFERENCE_GAUGES_EVERY` seconds: on a large database
        they take seconds, and the next batch does not wait for them."""
        while True:
            try:
                conn = await _connect(self.dsn)
                try:
                    while True:
                        await self._references_stale.wait()
                        self._references_stale.clear()
                        await self._refresh_references(conn)
                        await asyncio.sleep(REFERENCE_GAUGES_EVERY)
                finally:
                    await conn.close()
            except DATABASE_ERRORS as exc:
                log.warning("indexer gauges: %s; retrying", exc)
                await asyncio.sleep(1.0)


@dataclass(frozen=True, slots=True)
class ReindexReport:
    events: int
    head: int
    seconds: float


async def reindex(
    dsn: str,
    *,
    batch_size: int = 5000,
    bulk_min: int = BULK_MIN,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
) -> ReindexReport:
    """Rebuild every fitness table from ``events`` in one transaction.

    Readers see the old tables until the rebuild commits. A running indexer is paused at
    its next batch (its lock is taken between two of its batches) and continues from the
    rebuilt state afterwards. When the lock is held, ``say`` is told who holds it before
    the rebuild waits for it.
    """
    started = time.monotonic()
    conn = await _connect(dsn)
    try:
        await migrate(conn)
        async with conn.transaction(isolation="repeatable_read"):
            await _take_over(conn, dsn, say)
            head = int(await conn.fetchval(_Q["log_head"]))
            total = int(await conn.fetchval(_Q["count_events"], _KINDS))
            await conn.execute(_Q["clear_tables"])
            bar = _progress_bar(total, progress)
            done = 0
            after = 0
            while True:
                rows = await conn.fetch(_Q["log_entries"], after, head, _KINDS, batch_size)
                if not rows:
                    break
                await apply_entries(conn, rows, bulk_min=bulk_min)
                after = rows[-1]["seq"]
                done += len(rows)
                if bar is not None:
                    bar.update(len(rows))
            if bar is not None:
                bar.close()
            await conn.execute(_Q["save_checkpoint"], _NAME, head)
            await conn.execute(_Q["prune_removals"], head)
    finally:
        await conn.close()
    return ReindexReport(done, head, time.monotonic() - started)


async def _take_over(conn: Conn, dsn: str, say: Callable[[str], None] | None) -> None:
    """Take the indexer's lock (first in the transaction), saying whom it waits for.

    Who holds it is asked on a connection of its own: a query here would take the rebuild's
    snapshot before the holder's batch commits.
    """
    try:
        async with conn.transaction():  # a savepoint: a refused NOWAIT leaves the rest
            await conn.execute(_Q["try_lock_indexer"])
        return
    except asyncpg.LockNotAvailableError:
        pass
    if say is not None:
        other = await _connect(dsn)
        try:
            holders = await other.fetch(_Q["indexer_holders"])
        finally:
            await other.close()
        say(f"reindex: waiting for {_describe(holders)} to finish its batch")
    await conn.execute(_Q["lock_indexer"])
    if say is not None:
        say("reindex: the indexer is paused; rebuilding")


def _describe(holders: Sequence[asyncpg.Record]) -> str:
    if not holders:
        return "the indexer"
    return ", ".join(
        f"{row['application_name'] or 'a session'} (pid {row['pid']}, {row['state']})"
        for row in holders
    )


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="ev", desc="reindex", dynamic_ncols=True)
