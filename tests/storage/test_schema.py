"""The migrated schema: what a fresh database looks like after `fitrelay migrate`."""

from __future__ import annotations

from typing import Any

import asyncpg

from relay.storage.migrate import available_migrations, migrate
from tests.conftest import PARTITIONED


async def test_migrations_are_recorded_and_idempotent(db: asyncpg.Connection[Any]) -> None:
    names = [name for name, _ in available_migrations()]
    assert names and names == sorted(names)
    rows = await db.fetch("SELECT name FROM schema_migrations ORDER BY name")
    assert [r["name"] for r in rows] == names
    assert await migrate(db) == []


async def test_tables_columns_and_indexes(db: asyncpg.Connection[Any]) -> None:
    columns = {
        (r["table_name"], r["column_name"]): r["data_type"]
        for r in await db.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
    }
    for column, kind in {
        "seq": "bigint",
        "id": "bytea",
        "pubkey": "bytea",
        "kind": "integer",
        "created_at": "bigint",
        "d_tag": "text",
        "expires_at": "bigint",
        "raw": "text",
        "received_at": "timestamp with time zone",
    }.items():
        assert columns[("events", column)] == kind, column
    for column in ("event_id", "name", "value", "kind", "pubkey", "created_at"):
        assert ("event_tags", column) in columns
    assert ("deleted_events", "id") in columns
    assert ("deleted_addresses", "deleted_up_to") in columns
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await db.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public'"
        )
    }
    expected = {
        # Partitioned, an id is unique through event_keys (the key must hold created_at).
        "events_pkey": "(id, created_at)" if PARTITIONED else "(id)",
        "events_seq_idx": "(seq)",
        "events_address_idx": "(pubkey, kind, d_tag) WHERE (d_tag IS NOT NULL)",
        "events_kind_created_idx": "(kind, created_at DESC, id)",
        "events_pubkey_kind_created_idx": "(pubkey, kind, created_at DESC, id)",
        "event_tags_value_created_idx": "(name, value, created_at DESC, event_id)",
        "event_tags_value_kind_created_idx": "(name, value, kind, created_at DESC, event_id)",
        "event_tags_event_idx": "(event_id)",
    }
    for name, tail in expected.items():
        assert indexes[name].endswith(tail), indexes[name]
    if PARTITIONED:
        # Kept unique by the ingest functions under the log lock: a partitioned table's
        # unique indexes must hold its partition key.
        assert indexes["event_keys_pkey"].endswith("(id)")
        assert "UNIQUE" not in indexes["events_address_idx"]
    else:
        assert "UNIQUE" in indexes["events_address_idx"]
        assert "UNIQUE" in indexes["events_seq_idx"]


async def test_long_tag_values_never_break_an_insert(db_dsn: str) -> None:
    """A value far past btree's ~2.7 kB row limit is stored keyed, and still matches."""
    import msgspec

    from relay.nostr.event import decode_event
    from relay.nostr.filters import parse_filter
    from relay.nostr.limits import Limits
    from relay.storage.postgres import Store, create_pool
    from tests.signer import Keys

    long_value = "🏋️" * 3000
    raw = msgspec.json.encode(Keys(1).sign(1, "", [["t", long_value], ["r", "x" * 9000]]))
    pool = await create_pool(db_dsn)
    try:
        store = Store(pool, default_limit=10)
        await store.ingest([decode_event(raw)], [raw.decode()])
        flt = parse_filter({"#t": [long_value]}, Limits())
        assert [r for _, r in await store.query([flt], 0)] == [raw.decode()]
        assert await store.query([parse_filter({"#t": [long_value[:-1]]}, Limits())], 0) == []
    finally:
        await pool.close()


async def test_a_database_from_the_first_release_upgrades_in_place(server_dsn: str) -> None:
    """Events stored under migration 0001 alone survive the later migrations and are
    indexed by the first indexer run."""
    import msgspec

    from indexer.follower import Indexer
    from relay.nostr.event import decode_event
    from relay.storage.indexing import Indexing
    from relay.storage.postgres import Store, create_pool
    from tests.conftest import with_database
    from tests.signer import Keys

    name = "fitrelay_upgrade_test"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        first_name, first_sql = available_migrations()[0]
        await conn.execute(first_sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            f"INSERT INTO schema_migrations (name) VALUES ('{first_name}')"
        )
        keys = Keys(5)
        exercise = keys.sign(33401, "", [["d", "row"], ["title", "Row"]], created_at=10)
        raw = msgspec.json.encode(exercise)
        pool = await create_pool(dsn)
        try:
            # As the first release stored it: no search documents, single-letter tags only.
            first = Indexing(tag_names=frozenset(), search_kinds=frozenset())
            store = Store(pool, default_limit=10, indexing=first)
            await store.ingest([decode_event(raw)], [raw.decode()])
        finally:
            await pool.close()
        applied = await migrate(conn)
        assert applied == [name for name, _ in available_migrations()[1:]]
        await Indexer(dsn).catch_up(conn)
        assert await conn.fetchval("SELECT event_id FROM fitness.exercises") == exercise["id"]
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
