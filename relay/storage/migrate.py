"""Apply ``sql/migrations/NNNN_name.sql`` in order, once each, under an advisory lock."""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from relay.storage.queries import load_queries

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["applied_migrations", "available_migrations", "migrate"]

log = logging.getLogger(__name__)

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

_Q = load_queries("migrate.sql")
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK = 7447000


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


async def migrate(conn: Conn) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now.

    Safe to run from several processes at once: the first takes the lock and migrates,
    the others wait and then find nothing left to do.
    """
    await conn.execute(_Q["lock"], _LOCK)
    try:
        await conn.execute(_Q["create_ledger"])
        done = set(await applied_migrations(conn))
        applied: list[str] = []
        for name, sql in available_migrations():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(_Q["record"], name)
            log.info("applied migration %s", name)
            applied.append(name)
        return applied
    finally:
        await conn.execute(_Q["unlock"], _LOCK)
