"""The relay's locks cannot be taken or held hostage by the read-only role (migration 0008).

The reader holds every advisory key the relay used to lock (7447000 migrations, 7447001
writers, 7447002 the indexer) and whatever table lock its privileges allow; writers,
migrations, the indexer and a reindex must all still finish, each under a timeout. The
locks the relay does use are refused to the reader outright.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import asyncpg
import msgspec
import pytest

from indexer.follower import Indexer, reindex
from relay.nostr.event import decode_event
from relay.storage.migrate import migrate
from relay.storage.postgres import Store
from tests.signer import Keys

OLD_KEYS = (7447000, 7447001, 7447002)
RELAY_LOCKS = ("fitrelay_log_lock", "schema_migrations", "fitness.indexer_state")
DEADLINE = 10.0


async def publish(store: Store, count: int, seed: int) -> None:
    """Store ``count`` events in one batch (24 or more take the set-based path)."""
    keys = Keys(seed)
    raws = [msgspec.json.encode(keys.sign(1, f"note {i}", [["t", "x"]])) for i in range(count)]
    statuses = await store.ingest([decode_event(r) for r in raws], [r.decode() for r in raws])
    assert len(statuses) == count


async def test_nothing_takes_an_advisory_lock(db: asyncpg.Connection[Any]) -> None:
    functions = await db.fetch(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        " AND prosrc LIKE '%advisory%'"
    )
    assert functions == []
    for query_file in resources.files("sql.queries").iterdir():
        if query_file.name.endswith(".sql"):
            assert "advisory" not in query_file.read_text(), query_file.name


async def test_the_reader_holding_the_old_keys_blocks_nothing(
    db_dsn: str, db: asyncpg.Connection[Any], store: Store, reader: asyncpg.Connection[Any]
) -> None:
    for key in OLD_KEYS:
        assert await reader.fetchval("SELECT pg_try_advisory_lock($1)", key)
    # And every table lock the reader may take, held in an open transaction.
    await reader.execute("BEGIN")
    for table in ("fitness.indexer_state", "events", "event_tags"):
        await reader.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
    held = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND granted",
        await reader.fetchval("SELECT pg_backend_pid()"),
    )
    assert held >= len(OLD_KEYS) + 3
    async with asyncio.timeout(DEADLINE):
        await publish(store, 3, seed=1)  # the per-event path
        await publish(store, 30, seed=2)  # the set-based path
        assert await store.purge_expired(0) == 0
        assert await migrate(db) == []  # what a relay does first when it starts
        indexer = Indexer(db_dsn, batch_size=10)
        await indexer.catch_up(db)
        report = await reindex(db_dsn)
    assert await db.fetchval("SELECT count(*) FROM events") == 33
    assert indexer.stats.head == report.head > 0
    await reader.execute("ROLLBACK")


@pytest.mark.parametrize("table", RELAY_LOCKS)
async def test_the_reader_cannot_take_the_relays_locks(
    reader: asyncpg.Connection[Any], table: str
) -> None:
    for sql in (
        f"LOCK TABLE {table} IN EXCLUSIVE MODE",
        f"LOCK TABLE {table} IN SHARE MODE",
        f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE",
        f"SELECT * FROM {table} FOR UPDATE",
        f"SELECT * FROM {table} FOR KEY SHARE",
    ):
        await reader.execute("BEGIN READ WRITE")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(sql)
        finally:
            await reader.execute("ROLLBACK")
