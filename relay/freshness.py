"""Freshness: re-check upstream, in the background, what may be stale here.

The fetcher (:mod:`relay.fetcher`) runs one cycle every ``[fetcher.freshness]
interval_seconds``. A cycle takes at most ``batch`` due addresses from
``fitness.refresh_candidates`` (the profiles and relay lists of authors with indexed fitness
events, and the exercises and templates something references), the longest overdue first,
and asks each of the author's NIP-65 write relays (stored here) and the configured upstreams
for its newest version, route by route as the fetcher does. A newer version is stored through
the same checks and ingest as any fetched event (and the indexer reindexes it); an older or
equal one changes nothing. Whatever the outcome, the address is due again one threshold later
(``fitness.refresh_checks.next_check``), so a failing upstream or an address found nowhere is
asked once per threshold and never in a loop. Clients are served from the database
throughout: nothing here is on their path.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from relay.config import FreshnessConfig
from relay.nostr.routes import Address, UrlRules, Wanted, routes
from relay.storage.queries import load_queries

__all__ = ["OUTCOMES", "FreshnessStats", "Refresher"]

log = logging.getLogger(__name__)

_Q = load_queries("fetcher.sql")
OUTCOMES = ("updated", "unchanged", "absent", "error")
"""updated: a newer version was stored; unchanged: a relay had this version (or an older
one); absent: the relays asked answered without it; error: none answered."""
_EVENTS = -1
"""The threshold row of every kind without its own (referenced exercises and templates)."""

Ask = Callable[[list[Wanted]], Awaitable[None]]
RelayLists = Callable[[Any, Sequence[str]], Awaitable[dict[str, list[str]]]]


@dataclass(slots=True)
class FreshnessStats:
    checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    """Re-checks by outcome, since start."""
    cycles: int = 0
    tracked: int = 0
    """Addresses freshness tracks, as of the last cycle."""
    stale: int = 0
    """Of those, the ones past their threshold and not re-checked yet (served as stored)."""

    @property
    def stale_ratio(self) -> float:
        return self.stale / self.tracked if self.tracked else 0.0


class Refresher:
    """One freshness cycle at a time, driven by the fetcher's loop."""

    def __init__(
        self,
        config: FreshnessConfig,
        upstreams: Sequence[str],
        rules: UrlRules,
        *,
        use_relay_lists: bool,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.upstreams = list(upstreams)
        self.rules = rules
        self.use_relay_lists = use_relay_lists
        self.rng = rng
        self.stats = FreshnessStats()
        self._next = time.monotonic() + config.interval_seconds
        kinds = sorted({0, 3, 10002} | set(config.author_kinds))
        self._args = (
            list(config.author_kinds),
            [*kinds, _EVENTS],
            [config.threshold(kind) for kind in kinds] + [config.events_seconds],
        )

    def due(self) -> bool:
        """Whether a cycle is due now."""
        return self.config.enabled and time.monotonic() >= self._next

    async def cycle(self, pool: asyncpg.Pool, ask: Ask, relay_lists: RelayLists) -> int:
        """Re-check the due addresses once (at most ``batch``); how many were checked."""
        self._next = time.monotonic() + self.config.interval_seconds
        async with pool.acquire() as conn:
            rows = await conn.fetch(_Q["refresh_due"], *self._args, self.config.batch)
            authors = sorted({row["pubkey"] for row in rows})
            lists = await relay_lists(conn, authors) if self.use_relay_lists and rows else {}
        wanted = [
            Wanted(
                Address(row["kind"], row["pubkey"], row["d"]),
                routes((), lists.get(row["pubkey"], ()), self.upstreams, self.rules),
            )
            for row in rows
        ]
        if wanted:
            await ask(wanted)
        async with pool.acquire() as conn:
            for item in wanted:
                await self._record(conn, item)
            state = await conn.fetchrow(_Q["refresh_state"], *self._args)
        assert state is not None
        self.stats.cycles += 1
        self.stats.tracked, self.stats.stale = int(state["tracked"]), int(state["stale"])
        if wanted:
            log.info(
                "freshness: checked %d addresses (%d updated); %d of %d tracked are stale",
                len(wanted), sum(1 for item in wanted if item.stored),
                self.stats.stale, self.stats.tracked,
            )  # fmt: skip
        return len(wanted)

    async def _record(self, conn: Any, item: Wanted) -> None:
        if item.found_at is not None:
            outcome = "updated" if item.stored else "unchanged"
        elif item.answered:
            outcome = "absent"
        else:
            outcome = "error"
        self.stats.checks[outcome] += 1
        address = item.address
        # A tenth of jitter either way, so addresses stored together fall due apart.
        delay = self.config.threshold(address.kind) * (0.9 + 0.2 * self.rng.random())
        reason = None if outcome in ("updated", "unchanged") else item.reason or "no relay to ask"
        await conn.execute(
            _Q["refresh_record"], address.text, address.kind, address.pubkey, address.d,
            outcome, reason, item.found_at or item.last, delay,
        )  # fmt: skip
