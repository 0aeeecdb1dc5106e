"""The partition keeper stage: on a partitioned database (relay.storage.partition), makes
the month partitions of events ahead of time, at start and then every hour, so new events
land in their month's partition rather than the default one."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from relay.storage.failures import DATABASE_ERRORS
from relay.storage.partition import keep_partitions

__all__ = ["PartitionKeeper"]

log = logging.getLogger(__name__)


class PartitionKeeper:
    """A stage: keep the partitions of this month and ``ahead`` months after it made."""

    name = "partition keeper"

    def __init__(self, pool: asyncpg.Pool, ahead: int, interval: float = 3_600.0) -> None:
        self.pool = pool
        self.ahead = ahead
        self.interval = interval
        self.kept = asyncio.Event()
        """Set after each round that made (or found) every partition ahead."""

    async def start(self) -> None:
        """Nothing to set up: the first round runs at once in ``run``."""

    async def stop(self) -> None:
        """Nothing to drain: a round is a few short transactions, rolled back if cancelled."""

    async def keep(self) -> int:
        """One round; returns how many partitions it made."""
        async with self.pool.acquire() as conn:
            made = await keep_partitions(conn, now=int(time.time()), ahead=self.ahead)
        if made:
            log.info("made %d month partitions of events ahead of time", made)
        self.kept.set()
        return made

    async def run(self) -> None:
        while True:
            try:
                await self.keep()
            except DATABASE_ERRORS:
                log.exception("making partitions of events failed (events go to the default)")
            await asyncio.sleep(self.interval)
