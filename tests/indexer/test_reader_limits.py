"""What keeps ``fitrelay_reader`` in its place when it switches its defaults off.

The role's ``default_transaction_read_only`` and ``statement_timeout`` are defaults any session
may override (PostgreSQL has no way to pin them); what holds is its privileges: with
read-only off it still cannot write a table, create one (temporary or not) or a schema.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from relay.storage.migrate import migrate
from tests.conftest import READER, as_user

WRITES = (
    "INSERT INTO events (id) VALUES ('\\x00')",
    "UPDATE events SET kind = kind",
    "DELETE FROM events",
    "INSERT INTO fitness.non_workouts DEFAULT VALUES",
    "UPDATE fitness.workouts SET title = title",
    "DELETE FROM fitness.workouts",
    "CREATE TEMP TABLE scratch (x integer)",
    "CREATE TEMP VIEW scratch AS SELECT 1 AS x",
    "CREATE TABLE public.scratch (x integer)",
    "CREATE TABLE fitness.scratch (x integer)",
    "CREATE SCHEMA scratch",
)


async def test_with_its_defaults_switched_off_the_reader_still_writes_nothing(
    db_dsn: str, db: asyncpg.Connection[Any]
) -> None:
    # Database privileges do not travel with CREATE DATABASE ... TEMPLATE, as the test
    # databases are made: the migration runner puts them back on every run.
    await migrate(db)
    reader = await asyncpg.connect(as_user(db_dsn, READER))
    try:
        await reader.execute("SET default_transaction_read_only = off")
        await reader.execute("SET statement_timeout = 0")  # allowed: a default, documented
        assert await reader.fetchval("SHOW transaction_read_only") == "off"
        for sql in WRITES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(sql)
        assert await reader.fetchval("SELECT count(*) FROM fitness.workouts") == 0
    finally:
        await reader.close()


async def test_the_reader_has_no_temporary_or_create_privilege(
    db: asyncpg.Connection[Any],
) -> None:
    await migrate(db)
    privileges = await db.fetchrow(
        "SELECT has_database_privilege($1, current_database(), 'TEMPORARY') AS temp,"
        " has_database_privilege($1, current_database(), 'CREATE') AS create_schema,"
        " has_schema_privilege($1, 'public', 'CREATE') AS public_create,"
        " has_schema_privilege($1, 'fitness', 'CREATE') AS fitness_create,"
        " has_database_privilege(current_user, current_database(), 'TEMPORARY') AS own_temp",
        READER,
    )
    assert dict(privileges) == {
        "temp": False,
        "create_schema": False,
        "public_create": False,
        "fitness_create": False,
        "own_temp": True,  # the relay's own user keeps it
    }
    assert await migrate(db) == []  # and running again changes nothing
