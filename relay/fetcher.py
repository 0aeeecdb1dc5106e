"""The fetcher stage: complete missing references from other relays.

Each round reads the due addresses of ``fitness.missing_references`` (never tried, or
pending past their ``next_attempt`` in ``fitness.fetch_attempts``), works out each one's
routes (:func:`relay.nostr.routes.routes`: relay hints, the author's NIP-65 write relays
stored here, the configured upstreams) and asks the relays route by route: every address
whose next route is the same relay goes into one REQ (one filter per address, ``batch`` to a
REQ, ``concurrency`` REQs at once per relay, one connection each). A returned event counts only
if it is the address asked for; it goes through :func:`relay.archive.importer.check_line`, the
relay's EVENT checks, and is stored by :meth:`relay.storage.postgres.Store.ingest`, whose
NOTIFY wakes the indexer, which relinks the references as it indexes the event.

An address found nowhere is tried again after a growing, jittered delay and after
``max_attempts`` tries marked ``given_up``; a found one is never fetched again, so nothing
loops. A relay that fails (refused, silent past ``timeout_seconds``, broken protocol) is
skipped for a growing while. The stage runs in its own task on its own connection: a slow
upstream delays only the fetcher. With several processes on one database only the holder of
the lease in ``fitness.fetcher_lease`` fetches (renewed every round, taken over once expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from relay.archive.importer import Rejection, check_line
from relay.archive.upstream import connect_upstream
from relay.config import FetcherConfig
from relay.freshness import Refresher
from relay.nostr.kinds import RELAY_LIST
from relay.nostr.limits import Limits
from relay.nostr.policy import ConnInfo
from relay.nostr.routes import (
    Address,
    UrlRules,
    Wanted,
    address_filter,
    matches,
    retry_delay,
    routes,
)
from relay.nostr.routes import write_relays as parse_write_relays
from relay.nostr.rules import Rules
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.indexing import FITNESS_INDEXING, Indexing
from relay.storage.postgres import IngestStatus, Store, create_pool
from relay.storage.queries import load_queries

__all__ = ["FetchStats", "Fetcher"]

log = logging.getLogger(__name__)

_Q = load_queries("fetcher.sql")
_LEASE_SECONDS = 60.0
"""How long a lease lasts unless renewed; a round renews it, and rounds come at least every
``interval_seconds``."""
_OUTCOMES = ("found", "not_found", "error", "given_up")
_MAX_TRACKED = 100
_FETCHER = ConnInfo()
_enc = msgspec.json.Encoder()


@dataclass(slots=True)
class FetchStats:
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    """Addresses per round outcome (given_up also counts the round's not_found or error)."""
    requests: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})
    """REQs sent upstream, by whether they were answered up to EOSE."""
    depth: int = 0
    """Missing addresses not given up, as of the last round."""
    oldest_seconds: float = 0.0
    """Age of the oldest pending missing dependency (since the fetcher first saw it)."""
    last_success: dict[str, float] = field(default_factory=dict)
    """Unix time of each relay's last answered REQ (configured ones, then a few others)."""
    relay_lists: int = 0
    """Relay lists (kind 10002) fetched from the upstreams for authors that had none here."""
    relay_lists_local: int = 0
    """Authors whose relay list a round needed and found stored here (a fetch avoided)."""
    latency: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Per relay (tracked as last_success is): answered REQs and their seconds in all."""
    errors: dict[str, int] = field(default_factory=dict)
    """Per relay: REQs that failed (refused, silent, broken)."""


class Fetcher:
    """A stage (:mod:`relay.stages`) fetching what ``fitness.missing_references`` lists."""

    name = "fetcher"
    grace = 0.0

    def __init__(
        self,
        dsn: str,
        config: FetcherConfig,
        limits: Limits,
        *,
        rules: Rules | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        indexing: Indexing = FITNESS_INDEXING,
    ) -> None:
        self.indexing = indexing
        """What fetched events are indexed for besides themselves, as the writer does."""
        self.dsn = dsn
        self.config = config
        self.limits = limits
        self.clock = clock
        self.rng = rng or random.Random()
        self.write_rules = rules or Rules()
        """The deny and allow lists and PoW of ``[policy]`` (AUTH has no meaning here)."""
        self.rules = UrlRules(allow_loopback=config.allow_loopback)
        self.upstreams = [self.rules.normalise(u) or u for u in config.upstreams]
        self.stats = FetchStats()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        """Who this fetcher is in ``fitness.fetcher_lease``."""
        self._pool: asyncpg.Pool | None = None
        self._store: Store | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._lists_asked: dict[str, float] = {}
        """Authors whose relay list was asked of the upstreams, with when (monotonic)."""
        self.lists_task: asyncio.Task[None] | None = None
        """The background fetch of relay lists, when one runs (tests wait on it)."""
        self._down: dict[str, tuple[int, float]] = {}
        """Failing relays: (failures in a row, monotonic time before which they are skipped)."""
        self.refresher = Refresher(config.freshness, self.upstreams, self.rules,
                                   use_relay_lists=config.use_hints, rng=self.rng)  # fmt: skip
        """Freshness (:mod:`relay.freshness`): one cycle per its interval, after a round."""

    def wake(self, _payload: str = "") -> None:
        """Look for due addresses now (a commit may have added references)."""
        self._wake.set()

    async def start(self) -> None:
        self._pool = await create_pool(self.dsn, min_size=1, max_size=1)
        self._store = Store(self._pool, default_limit=1, indexing=self.indexing)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        pool = self._pool
        assert pool is not None
        try:
            while not self._stopping:
                self._wake.clear()  # before the round: a wake-up during it is kept
                try:
                    busy = await self._hold() and await self.round()
                except DATABASE_ERRORS as exc:
                    log.warning("fetcher round failed: %s", exc)
                    busy = False
                except Exception:  # a bug must not end fetching for the process's life
                    log.exception("fetcher round failed")
                    busy = False
                if not busy:
                    await self._pause()
        finally:
            if self.lists_task is not None:
                self.lists_task.cancel()
                await asyncio.gather(self.lists_task, return_exceptions=True)
            with contextlib.suppress(*DATABASE_ERRORS, TimeoutError):
                async with asyncio.timeout(2), pool.acquire() as conn:
                    await conn.execute(_Q["give_lease"], self.holder)
            # At once, even when cancelled in a query: closing politely would wait on it.
            pool.terminate()

    async def _hold(self) -> bool:
        """Take or renew the lease; False while another process holds it."""
        assert self._pool is not None
        lease = max(_LEASE_SECONDS, 3 * self.config.interval_seconds)
        async with self._pool.acquire() as conn:
            return bool(await conn.fetchval(_Q["take_lease"], self.holder, lease))

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.config.interval_seconds)

    async def round(self) -> bool:
        """Fetch the due addresses once; False when none was due."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_Q["due"], self.config.queue_size)
            pending = await self._plan(conn, rows) if rows else []
        if pending:
            now = time.monotonic()
            self._down = {url: down for url, down in self._down.items() if down[1] > now}
            try:
                await self._ask_all(pending)
            finally:
                self._slots.clear()  # per round: hinted URLs must not pile up
            async with self._pool.acquire() as conn:
                for item in pending:
                    await self._record(conn, item)
        async with self._pool.acquire() as conn:
            backlog = await conn.fetchrow(_Q["backlog"])
        assert backlog is not None
        self.stats.depth = int(backlog["depth"])
        self.stats.oldest_seconds = float(backlog["oldest_seconds"])
        if self.refresher.due():
            await self.refresh()
        return bool(pending)

    async def refresh(self) -> int:
        """One freshness cycle now (:meth:`relay.freshness.Refresher.cycle`)."""
        assert self._pool is not None
        try:
            return await self.refresher.cycle(self._pool, self._ask_all, self._relay_lists)
        finally:
            self._slots.clear()

    async def _plan(self, conn: Any, rows: Sequence[asyncpg.Record]) -> list[Wanted]:
        lists: dict[str, list[str]] = {}
        if self.config.use_hints:
            authors = sorted({row["pubkey"] for row in rows})
            lists = await self._relay_lists(conn, authors)
            self.stats.relay_lists_local += len(lists)
            self._look_for_relay_lists([a for a in authors if a not in lists])
        pending = []
        for row in rows:
            address = Address(row["kind"], row["pubkey"], row["d"], tuple(row["relay_hints"]))
            hints = address.hints if self.config.use_hints else ()
            found = routes(hints, lists.get(address.pubkey, ()), self.upstreams, self.rules)
            pending.append(Wanted(address, found, int(row["attempts"])))
        return pending

    async def _relay_lists(self, conn: Any, authors: Sequence[str]) -> dict[str, list[str]]:
        """The write relays of the stored NIP-65 lists of ``authors`` (hex pubkeys)."""
        keys = [bytes.fromhex(author) for author in authors]
        return {
            row["pubkey"]: parse_write_relays(row["raw"])
            for row in await conn.fetch(_Q["relay_lists"], keys)
        }

    def _look_for_relay_lists(self, unlisted: Sequence[str]) -> None:
        """Ask the configured upstreams, in the background, for the relay lists (kind 10002)
        of authors this database has none of, each at most once per ``retry_max_seconds``;
        the rounds after it follow them (the outbox model) without waiting on it now."""
        if not self.upstreams or (self.lists_task is not None and not self.lists_task.done()):
            return
        now = time.monotonic()
        self._lists_asked = {
            a: t for a, t in self._lists_asked.items() if now - t < self.config.retry_max_seconds
        }
        due = [a for a in unlisted if a not in self._lists_asked][: self.config.queue_size]
        if due:
            self._lists_asked.update(dict.fromkeys(due, now))
            self.lists_task = asyncio.create_task(self._fetch_relay_lists(due))

    async def _fetch_relay_lists(self, authors: Sequence[str]) -> None:
        wanted = [
            Wanted(Address(RELAY_LIST, author, "", ()), list(self.upstreams), 0)
            for author in authors
        ]
        try:
            await self._ask_all(wanted)
        except Exception:  # like a round: a failure here must not end the stage
            log.exception("fetcher: fetching relay lists failed")
            return
        found = sum(1 for item in wanted if item.found_at is not None)
        self.stats.relay_lists += found
        if found:
            self._wake.set()  # a round may now follow them

    async def _ask_all(self, pending: list[Wanted]) -> None:
        """Route by route until every address is found or has no route left."""
        while True:
            groups: dict[str, list[Wanted]] = {}
            for item in pending:
                url = self._next_route(item)
                if url is not None:
                    groups.setdefault(url, []).append(item)
            if not groups:
                return
            await asyncio.gather(*(self._ask(url, items) for url, items in groups.items()))

    def _next_route(self, item: Wanted) -> str | None:
        now = time.monotonic()
        while item.found_at is None and item.tried < len(item.routes):
            url = item.routes[item.tried]
            failing = self._down.get(url)
            if failing is None or failing[1] <= now:
                return url
            item.tried += 1
            item.errors += 1
            item.reason = item.reason or f"{url}: skipped after failures"
        return None

    async def _ask(self, url: str, items: list[Wanted]) -> None:
        size = self.config.batch
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        await asyncio.gather(*(self._ask_chunk(url, chunk) for chunk in chunks))

    async def _ask_chunk(self, url: str, items: list[Wanted]) -> None:
        slot = self._slots.setdefault(url, asyncio.Semaphore(self.config.concurrency))
        async with slot:
            started = time.monotonic()
            try:
                raws = await self._req(url, [address_filter(i.address) for i in items])
            except Exception as exc:  # refused, silent, or broken: none may stop the stage
                self._failed(url, items, exc)
                return
        self.stats.requests["ok"] += 1
        self._down.pop(url, None)
        stats = self.stats
        if (
            url in self.upstreams
            or url in stats.last_success
            or len(stats.last_success) < _MAX_TRACKED
        ):
            stats.last_success[url] = self.clock()
            count, seconds = stats.latency.get(url, (0, 0.0))
            stats.latency[url] = (count + 1, seconds + time.monotonic() - started)
        for item in items:
            item.tried += 1
            item.answered += 1
            item.last = url
            item.reason = f"{url}: not found"
        await self._store_found(url, items, raws)

    def _failed(self, url: str, items: list[Wanted], exc: BaseException) -> None:
        self.stats.requests["error"] += 1
        if (
            url in self.upstreams
            or url in self.stats.errors
            or len(self.stats.errors) < _MAX_TRACKED
        ):
            self.stats.errors[url] = self.stats.errors.get(url, 0) + 1
        failures = self._down.get(url, (0, 0.0))[0] + 1
        pause = min(self.config.retry_max_seconds,
                    self.config.retry_base_seconds * 2 ** (failures - 1))  # fmt: skip
        self._down[url] = (failures, time.monotonic() + pause)
        reason = f"{url}: {type(exc).__name__}: {exc}"[:300]
        log.info("fetcher: %s", reason)
        for item in items:
            item.tried += 1
            item.errors += 1
            item.last = url
            item.reason = reason

    async def _req(self, url: str, filters: list[dict[str, Any]]) -> list[Any]:
        """The events a relay answers one REQ with, up to its EOSE."""
        timeout = self.config.timeout_seconds
        async with connect_upstream(url, timeout, self.limits.max_message_bytes) as upstream:
            return await upstream.req(*filters, most=4 * len(filters))

    async def _store_found(self, url: str, items: list[Wanted], raws: list[Any]) -> None:
        assert self._store is not None
        now = int(self.clock())
        chosen: dict[int, tuple[Any, Wanted]] = {}
        for event in raws:
            for index, item in enumerate(items):
                if item.found_at is None and matches(event, item.address):
                    best = chosen.get(index)
                    if best is None or event.get("created_at", 0) > best[0].get("created_at", 0):
                        chosen[index] = (event, item)
        events, texts, owners = [], [], []
        for event, item in chosen.values():
            checked = check_line(_enc.encode(event), self.limits, now)
            if isinstance(checked, Rejection):
                item.reason = f"{url}: {checked.reason}"[:300]
                continue
            refused = self.write_rules.refuse_event(_FETCHER, checked.event, now)
            if refused is not None:
                item.reason = f"{url}: {refused.message}"[:300]
                continue
            events.append(checked.event)
            texts.append(checked.raw)
            owners.append(item)
        if not events:
            return
        for status, item in zip(await self._store.ingest(events, texts), owners, strict=True):
            accepted, message = status.reply
            # SUPERSEDED: a newer version is stored here, so this database is up to date.
            if accepted or status is IngestStatus.SUPERSEDED:
                item.found_at = url
                item.stored = status is IngestStatus.STORED
                item.reason = None
            else:
                item.reason = f"{url}: {message}"[:300]

    async def _record(self, conn: Any, item: Wanted) -> None:
        address = item.address
        if item.found_at is not None:
            outcome, status, reason, delay = "found", "found", None, 0.0
        else:
            outcome = "not_found" if item.answered or not item.routes else "error"
            attempts = item.attempts + 1
            given_up = attempts >= self.config.max_attempts
            status = "given_up" if given_up else "pending"
            reason = item.reason or "no relay to ask"
            delay = retry_delay(attempts, self.config.retry_base_seconds,
                                self.config.retry_max_seconds, self.rng)  # fmt: skip
            if given_up:
                self.stats.outcomes["given_up"] += 1
        self.stats.outcomes[outcome] += 1
        await conn.fetchval(
            _Q["record"], address.text, address.kind, address.pubkey, address.d, status,
            reason, item.found_at or item.last, delay,
        )  # fmt: skip
