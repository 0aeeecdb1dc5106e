"""Apply ``sql/migrations/NNNN_name.sql`` in order, once each, in one transaction that holds
a lock on the ledger (``schema_migrations``) no reading role can take or block."""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from relay.storage.queries import load_queries

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["applied_migrations", "available_migrations", "migrate"]

log = logging.getLogger(__name__)

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

_Q = load_queries("migrate.sql")
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available_migrations() -> list[tuple[str, str]]:
    """``(name, sql)`` for every migration shipped, in order."""
    folder = resources.files("sql.migrations")
    names = sorted(p.name for p in folder.iterdir() if _FILE.match(p.name))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


async def applied_migrations(conn: Conn) -> list[str]:
    exists = await conn.fetchval(_Q["ledger_exists"])
    if not exists:
        return []
    rows = await conn.fetch(_Q["applied"])
    return [row["name"] for row in rows]


async def _create_ledger(conn: Conn) -> None:
    """Create the ledger, the one thing done before the lock (it is what gets locked)."""
    if await conn.fetchval(_Q["ledger_exists"]):
        return
    try:
        async with conn.transaction():
            await conn.execute(_Q["create_ledger"])
    except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
        pass  # another process created it at the same moment: it exists now


async def migrate(conn: Conn) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now.

    Safe to run from several processes at once: the first takes the ledger's lock and
    migrates, the others wait and then find nothing left to do. Pending migrations are
    applied together in one transaction, so a failing one leaves the schema as it was.
    """
    await _create_ledger(conn)
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute(_Q["lock"])
        done = set(await applied_migrations(conn))
        for name, sql in available_migrations():
            if name in done:
                continue
            await conn.execute(sql)
            await conn.execute(_Q["record"], name)
            applied.append(name)
        await conn.execute(_Q["restrict_reader"])
    for name in applied:
        log.info("applied migration %s", name)
    return applied
