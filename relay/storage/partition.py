"""The opt-in partitioned layout of ``events`` (``[db] partitioning = "monthly"``): converting
a database to it, making month partitions ahead of time, detaching old months for archive.

The SQL is ``sql/queries/partition.sql``; what the layout changes is described there and in
docs/scaling.md. Nothing here runs for a database that did not opt in.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = [
    "Partition",
    "convert",
    "detach_before",
    "is_partitioned",
    "keep_partitions",
    "partitioned_as_configured",
    "partitions",
]

log = logging.getLogger(__name__)

_Q = load_queries("partition.sql")


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of ``events``."""

    name: str
    bounds: str
    rows_estimate: int
    bytes: int


async def is_partitioned(conn: Conn) -> bool:
    """Whether ``events`` is the partitioned table."""
    return bool(await conn.fetchval(_Q["is_partitioned"]))


async def convert(conn: Conn, *, now: int, ahead: int) -> bool:
    """Convert ``events`` to the partitioned layout (in one transaction, holding the log
    lock: writers wait for it) and make the partitions of this month and ``ahead`` more.
    Returns whether it converted (False: it already was partitioned)."""
    async with conn.transaction():
        was = await is_partitioned(conn)
        await conn.execute(_Q["functions"])
        if not was:
            await conn.execute(_Q["convert"])
        await conn.fetchval(_Q["keep"], now, ahead)
    if not was:
        log.info("events converted to monthly partitions")
    return not was


async def keep_partitions(conn: Conn, *, now: int, ahead: int) -> int:
    """Make the partitions of the month of ``now`` and the ``ahead`` months after it, each
    in its own transaction; returns how many were made."""
    made = 0
    for month in range(ahead + 1):
        async with conn.transaction():
            made += int(await conn.fetchval(_Q["keep_one"], now, month))
    return made


async def detach_before(conn: Conn, before: int) -> list[str]:
    """Detach every month partition that ends at or before ``before`` (Unix time); they stay
    in the database as plain tables. Returns their names."""
    async with conn.transaction():
        rows = await conn.fetch(_Q["detach"], before)
    return [str(row["name"]) for row in rows]


async def partitions(conn: Conn) -> list[Partition]:
    """The partitions of ``events``, by name."""
    rows = await conn.fetch(_Q["status"])
    return [
        Partition(r["name"], r["bounds"], int(r["rows_estimate"]), int(r["bytes"])) for r in rows
    ]


async def partitioned_as_configured(conn: Conn, *, monthly: bool, ahead: int) -> bool:
    """At a start: convert when ``monthly`` is asked for and events is one table yet; returns
    whether events is partitioned (it stays so when no longer asked for, and says so)."""
    if await is_partitioned(conn):
        if not monthly:
            log.info(
                'events is partitioned although db.partitioning is not "monthly":'
                " month partitions are still made ahead (docs/operations.md)"
            )
        return True
    if monthly:
        log.warning("converting events to monthly partitions: writers wait until it is done")
        await convert(conn, now=int(time.time()), ahead=ahead)
        return True
    return False
