"""``fitrelay sync``'s checkpoints (table ``sync_checkpoints``, migration 0014): how far a
sync by REQ pages got with one upstream, filter and direction, written after each stored
page so an interrupted sync continues from there."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from relay.storage.queries import load_queries

__all__ = ["Checkpoint", "CheckpointKey", "SyncCheckpoints"]

_Q = load_queries("sync.sql")


@dataclass(frozen=True, slots=True)
class CheckpointKey:
    upstream: str
    filter: str
    """The filter as canonical JSON (sorted keys, sorted and deduplicated arrays)."""
    direction: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    phase: str
    """``down`` while paging back, ``up`` once every page is stored and publishing began."""
    until_at: int | None
    """The ``created_at`` reached: the next page asks for ``until`` this (inclusive)."""
    boundary_ids: frozenset[str]
    """The ids already stored at ``until_at``, not counted again."""
    sent_through: str | None
    """The last id published (ids go up in order), when ``phase`` is ``up``."""
    pages: int
    counts: str
    """The summary's counts so far, as JSON."""
    started_at: float = 0.0


class SyncCheckpoints:
    """Reads and writes checkpoints on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, key: CheckpointKey) -> Checkpoint | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_Q["load"], key.upstream, key.filter, key.direction)
        if row is None:
            return None
        return Checkpoint(
            phase=row["phase"],
            until_at=row["until_at"],
            boundary_ids=frozenset(row["boundary_ids"]),
            sent_through=row["sent_through"],
            pages=row["pages"],
            counts=row["counts"],
            started_at=row["started_at"],
        )

    async def save(self, key: CheckpointKey, point: Checkpoint) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                _Q["save"],
                key.upstream,
                key.filter,
                key.direction,
                point.phase,
                point.until_at,
                sorted(point.boundary_ids),
                point.sent_through,
                point.pages,
                point.counts,
            )

    async def clear(self, key: CheckpointKey) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(_Q["clear"], key.upstream, key.filter, key.direction)
