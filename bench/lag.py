"""How far behind the log the fitness indexer runs while events arrive.

A sampler polls the indexer's checkpoint (``fitness.indexer_state``) every ``interval``
seconds on a connection of its own. When the checkpoint has moved, every fitness event it
now covers gets a lag: the database clock at that poll minus the event's ``received_at``
(when the relay committed it). The figures are therefore upper bounds, coarse by one
interval. After the load ends the sampler keeps polling until the checkpoint reaches the
log's head (or ``drain_timeout`` passes), so the last events count too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench.common import latency_summary

__all__ = ["IndexerLag"]

_FITNESS_KINDS = [1301, 30003, 30004, 33401, 33402, 33403]
_COVERED = """
SELECT extract(epoch FROM clock_timestamp() - received_at)::float8 AS lag FROM events
WHERE seq > $1 AND seq <= $2 AND kind = ANY($3::integer[])
"""
_CHECKPOINT = "SELECT last_seq FROM fitness.indexer_state WHERE name = 'main'"
_HEAD = "SELECT coalesce(max(seq), 0) FROM events"


class IndexerLag:
    """Samples the indexer's lag behind the log of one database until stopped."""

    def __init__(self, dsn: str, *, interval: float = 0.05, drain_timeout: float = 60.0):
        self.dsn = dsn
        self.interval = interval
        self.drain_timeout = drain_timeout
        self.lags: list[float] = []
        self.drained = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> IndexerLag:
        conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._run(conn))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self, conn: asyncpg.Connection[Any]) -> None:
        try:
            seen = int(await conn.fetchval(_CHECKPOINT) or 0)
            deadline: float | None = None
            while True:
                seen = await self._poll(conn, seen)
                if self._stop.is_set():
                    if deadline is None:
                        deadline = time.monotonic() + self.drain_timeout
                    if seen >= int(await conn.fetchval(_HEAD)):
                        self.drained = True
                        return
                    if time.monotonic() > deadline:
                        return
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()

    async def _poll(self, conn: asyncpg.Connection[Any], seen: int) -> int:
        checkpoint = int(await conn.fetchval(_CHECKPOINT) or 0)
        if checkpoint > seen:
            rows = await conn.fetch(_COVERED, seen, checkpoint, _FITNESS_KINDS)
            self.lags.extend(max(r["lag"], 0.0) for r in rows)
        return max(seen, checkpoint)

    def summary(self) -> dict[str, Any]:
        """Lag percentiles in ms (``n`` fitness events), and whether the indexer caught up."""
        return {**latency_summary(self.lags), "caught_up": self.drained}
