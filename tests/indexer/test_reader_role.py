"""The read-only role ``fitrelay_reader`` (migrations 0004 and 0008): reads the fitness schema
and the published events, writes nothing.

Two layers are checked separately: the role's default of read-only transactions (a guard
rail the session could switch off), and, inside an explicitly read-write transaction, the
privileges themselves, which are what actually keep the role from writing.
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from typing import Any

import asyncpg
import msgspec
import pytest

from relay.nostr.event import decode_event
from relay.storage.migrate import available_migrations, migrate
from relay.storage.postgres import ingest_args
from relay.storage.queries import load_queries
from tests.conftest import PARTITIONED, READER, with_database
from tests.signer import Keys

PUBLIC_READABLE = {"public.events", "public.event_tags", "public.schema_migrations"}
PUBLIC_HIDDEN = {
    "public.deleted_events",
    "public.deleted_addresses",
    "public.removed_events",
    "public.fitrelay_log_lock",
    # NIP-50 search and the record of what stored events are indexed for (migration 0011).
    "public.search_documents",
    "public.search_words",
    "public.indexed_tag_names",
    "public.search_kinds",
    # fitrelay sync's checkpoints (migration 0014).
    "public.sync_checkpoints",
}
FITNESS_RELATIONS = {
    "indexer_state",
    "exercises",
    "exercise_hashtags",
    "exercise_media",
    "templates",
    "template_sets",
    "workouts",
    "workout_sets",
    "workout_splits",
    "workout_prs",
    "non_workouts",
    "lists",
    "list_items",
    "index_errors",
    "unresolved_references",
    "missing_references",
    "incomplete_templates",
    "strength_sets",
    "weekly_volume_by_exercise",
    "weekly_volume_by_muscle",
    "personal_records",
    "template_usage",
    "cardio_totals",
}
DENIED = (asyncpg.InsufficientPrivilegeError,)
READ_ONLY = (asyncpg.ReadOnlySQLTransactionError,)
_ids = itertools.count()


class _Rollback(Exception):
    """Raised to roll a test transaction back."""


async def relations(conn: asyncpg.Connection[Any], kinds: str) -> list[str]:
    """Qualified names of the relations of schemas public and fitness with these relkinds."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('public', 'fitness') AND c.relkind = ANY($1::char[])"
        " ORDER BY 1",
        list(kinds),
    )
    return [r["name"] for r in rows]


async def test_the_role_is_plain_and_has_its_settings(db: asyncpg.Connection[Any]) -> None:
    role = await db.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", READER)
    assert role is not None
    assert role["rolcanlogin"]
    for attribute in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication"):
        assert not role[attribute], attribute
    assert not role["rolbypassrls"]
    settings = dict(s.split("=", 1) for s in role["rolconfig"])
    assert settings["default_transaction_read_only"] == "on"
    assert settings["statement_timeout"] not in ("", "0")
    assert settings["idle_in_transaction_session_timeout"] not in ("", "0")
    members = await db.fetchval(
        "SELECT count(*) FROM pg_auth_members WHERE member = $1::regrole", READER
    )
    assert members == 0  # it inherits nothing


async def test_sessions_get_a_statement_timeout_and_read_only_default(
    reader: asyncpg.Connection[Any],
) -> None:
    assert await reader.fetchval("SELECT current_user") == READER
    assert await reader.fetchval("SHOW statement_timeout") == "1min"
    assert await reader.fetchval("SHOW idle_in_transaction_session_timeout") == "5min"
    assert await reader.fetchval("SHOW default_transaction_read_only") == "on"
    assert await reader.fetchval("SHOW transaction_read_only") == "on"


async def test_reads_the_fitness_schema_and_the_events_only(
    db: asyncpg.Connection[Any], reader: asyncpg.Connection[Any]
) -> None:
    names = set(await relations(db, "rpvmf"))
    fitness = {name for name in names if name.startswith("fitness.")}
    assert {f"fitness.{name}" for name in FITNESS_RELATIONS} <= fitness
    hidden = set(PUBLIC_HIDDEN)
    if PARTITIONED:
        # The partitions are read through events only; event_keys is bookkeeping.
        parts = await db.fetch(
            "SELECT 'public.' || inhrelid::regclass::text AS name FROM pg_inherits"
            " WHERE inhparent = 'events'::regclass"
        )
        assert len(parts) > 1
        hidden |= {r["name"] for r in parts} | {"public.event_keys"}
    assert names - fitness == PUBLIC_READABLE | hidden
    await db.execute(
        "INSERT INTO fitness.non_workouts VALUES ($1, $2, now(), 'email')", "1" * 64, "2" * 64
    )
    for name in sorted(fitness | PUBLIC_READABLE):
        await reader.fetch(f"SELECT * FROM {name} LIMIT 1")  # must not raise
    assert await reader.fetchval("SELECT reason FROM fitness.non_workouts") == "email"
    for name in sorted(hidden):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.fetch(f"SELECT * FROM {name} LIMIT 1")


async def test_tables_created_later_are_readable(
    db: asyncpg.Connection[Any], reader: asyncpg.Connection[Any]
) -> None:
    """Default privileges: a later migration's fitness tables need no grant of their own;
    what it adds to public stays the relay's until granted."""
    await db.execute("CREATE TABLE fitness.later (x integer)")
    await db.execute("CREATE VIEW later_view AS SELECT 1 AS x")
    await db.execute("INSERT INTO fitness.later VALUES (7)")
    assert await reader.fetchval("SELECT x FROM fitness.later") == 7
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await reader.fetchval("SELECT x FROM later_view")


async def writes(conn: asyncpg.Connection[Any], table: str) -> list[str]:
    column = await conn.fetchval(
        "SELECT quote_ident(attname) FROM pg_attribute"
        " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attidentity = '' AND attgenerated = '' ORDER BY attnum",
        table,
    )
    return [
        f"INSERT INTO {table} DEFAULT VALUES",
        *([f"UPDATE {table} SET {column} = {column}"] if column else []),
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
    ]


async def expect_failure(
    conn: asyncpg.Connection[Any], sql: str, errors: tuple[type[Exception], ...], *args: Any
) -> None:
    """Run ``sql`` in its own transaction (read-write when the errors are privilege errors)
    and check it fails with one of ``errors``."""
    begin = "BEGIN READ WRITE" if errors is DENIED else "BEGIN"
    await conn.execute(begin)
    try:
        with pytest.raises(errors):
            await conn.execute(sql, *args)
    finally:
        await conn.execute("ROLLBACK")


async def test_cannot_write_any_table_even_in_a_read_write_transaction(
    db: asyncpg.Connection[Any], reader: asyncpg.Connection[Any]
) -> None:
    tables = await relations(db, "rp")
    assert "public.events" in tables and "fitness.workouts" in tables
    await db.execute(
        "INSERT INTO fitness.non_workouts VALUES ($1, $2, now(), 'email')", "1" * 64, "2" * 64
    )
    for table in tables:
        for sql in await writes(db, table):
            await expect_failure(reader, sql, DENIED)  # the privileges
            await expect_failure(reader, sql, READ_ONLY)  # the role's default
    assert await db.fetchval("SELECT count(*) FROM fitness.non_workouts") == 1


async def test_cannot_create_in_either_schema(reader: asyncpg.Connection[Any]) -> None:
    for schema in ("public", "fitness"):
        for sql in (
            f"CREATE TABLE {schema}.intruder (x integer)",
            f"CREATE VIEW {schema}.intruder AS SELECT 1 AS x",
            f"CREATE FUNCTION {schema}.intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ):
            await expect_failure(reader, sql, DENIED)
            await expect_failure(reader, sql, READ_ONLY)
    await expect_failure(reader, "CREATE SCHEMA intruder", DENIED)


async def test_cannot_write_through_the_ingest_function(
    db: asyncpg.Connection[Any], reader: asyncpg.Connection[Any]
) -> None:
    """fitrelay_ingest runs with the caller's privileges, so it cannot store for the role."""
    security_definer = await db.fetchval(
        "SELECT bool_or(prosecdef) FROM pg_proc WHERE proname = 'fitrelay_ingest'"
    )
    assert security_definer is False
    raw = msgspec.json.encode(Keys(1).sign(1, "hello", [["t", "x"]])).decode()
    ingest = load_queries("events.sql")["ingest"]
    args = ingest_args([decode_event(raw.encode())], [raw])
    await expect_failure(reader, ingest, DENIED, *args)
    # Read-only by default too; the writers' lock (0008) is refused before any write is tried.
    await expect_failure(reader, ingest, READ_ONLY + DENIED, *args)
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    # The same call stores the event for the owner: the failures above are the role's.
    assert await db.fetchval(ingest, *args) == [0]
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_migrating_without_createrole_grants_without_failing(
    server_dsn: str, db_dsn: str
) -> None:
    """A migrating user that may not manage roles (nor grant on the database or schema
    public) still migrates: the role parts it cannot do become notices, and the reader
    still gets SELECT on the tables that user creates.

    The unprivileged user exists only inside a transaction that is rolled back, so nothing
    is left in the cluster.
    """
    name = f"{urllib.parse.urlsplit(db_dsn).path.lstrip('/')}_bare"
    user = f"fitrelay_test_migrator_{os.getpid()}_{next(_ids)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(with_database(server_dsn, name))
        notices: list[str] = []
        conn.add_log_listener(lambda _conn, message: notices.append(str(message)))
        try:
            with pytest.raises(_Rollback):
                async with conn.transaction():
                    await conn.execute(f"CREATE ROLE {user} NOLOGIN NOCREATEROLE")
                    await conn.execute(f'GRANT CREATE ON DATABASE "{name}" TO {user}')
                    await conn.execute(f"GRANT CREATE ON SCHEMA public TO {user}")
                    await conn.execute(f"SET ROLE {user}")
                    applied = await migrate(conn)
                    assert "0004_research.sql" in applied
                    granted = await conn.fetchval(
                        "SELECT has_table_privilege($1, 'fitness.workouts', 'SELECT')"
                        " AND has_table_privilege($1, 'public.events', 'SELECT')"
                        " AND has_table_privilege($1, 'fitness.personal_records', 'SELECT')"
                        " AND NOT has_table_privilege($1, 'public.events', 'INSERT')",
                        READER,
                    )
                    assert granted
                    raise _Rollback
        finally:
            await conn.close()
        assert any("may not grant CONNECT" in n for n in notices), notices
        assert any("may not grant USAGE on schema public" in n for n in notices), notices
        assert not any("no privileges were granted" in n for n in notices), notices
        assert await admin.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", user) == 0
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def role_block(name: str) -> str:
    """The migration's role setup with the role renamed, to run it where the real role
    already exists (roles are cluster-wide, so the real one cannot be dropped to test)."""
    sql = next(sql for file, sql in available_migrations() if file == "0004_research.sql")
    block = sql[sql.index("DO $role$") :]
    return block.replace(READER, name)


async def test_role_setup_creates_the_role_when_missing(db: asyncpg.Connection[Any]) -> None:
    name = f"fitrelay_test_reader_{os.getpid()}_{next(_ids)}"
    with pytest.raises(_Rollback):
        async with db.transaction():
            await db.execute(role_block(name))
            role = await db.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", name)
            assert role is not None and role["rolcanlogin"] and not role["rolsuper"]
            assert sorted(role["rolconfig"]) == [
                "default_transaction_read_only=on",
                "idle_in_transaction_session_timeout=5min",
                "statement_timeout=60s",
            ]
            assert await db.fetchval(
                "SELECT has_table_privilege($1, 'fitness.cardio_totals', 'SELECT')", name
            )
            # Run again (a second database of the same cluster): nothing fails or changes.
            await db.execute(f"ALTER ROLE {name} SET statement_timeout = '5min'")
            await db.execute(role_block(name))
            config = await db.fetchval("SELECT rolconfig FROM pg_roles WHERE rolname = $1", name)
            assert "statement_timeout=5min" in config  # an operator's value is kept
            raise _Rollback
    assert await db.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", name) == 0


async def test_role_setup_is_skipped_without_createrole(db: asyncpg.Connection[Any]) -> None:
    name = f"fitrelay_test_reader_{os.getpid()}_{next(_ids)}"
    user = f"fitrelay_test_migrator_{os.getpid()}_{next(_ids)}"
    notices: list[str] = []
    db.add_log_listener(lambda _conn, message: notices.append(str(message)))
    with pytest.raises(_Rollback):
        async with db.transaction():
            await db.execute(f"CREATE ROLE {user} NOLOGIN NOCREATEROLE")
            await db.execute(f"SET ROLE {user}")
            await db.execute(role_block(name))  # must not raise
            await db.execute("RESET ROLE")
            assert await db.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", name) == 0
            raise _Rollback
    assert any("may not create roles" in n for n in notices), notices
