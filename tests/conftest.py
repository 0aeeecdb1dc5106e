"""Shared fixtures: a real PostgreSQL, a migrated template database, and running relays.

``FITRELAY_TEST_DSN`` names a server to use (it must allow CREATE DATABASE); without it the
suite starts a throwaway embedded PostgreSQL for the session. Each test that needs a database
gets a fresh one cloned from a template migrated once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from relay.app import Relay
from relay.config import Config
from relay.storage.migrate import migrate
from relay.storage.partition import convert, keep_partitions
from relay.storage.postgres import Store, create_pool
from tests.client import RawClient

_ids = itertools.count()
_PREFIX = f"fitrelay_test_{os.getpid()}"


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


PARTITIONED = os.environ.get("FITRELAY_TEST_PARTITIONED") == "1"
"""Whether every test database has the partitioned layout of events (relay.storage.partition)."""

PARTITION_MONTHS = (1_700_000_000, 1_740_000_000, 1_742_703_619, 1_750_813_460)
"""Times tests store events at: their months get partitions beside this month's and the two
after it (times in no month partition, such as 100, land in the default partition)."""


async def partition_for_tests(conn: asyncpg.Connection[Any]) -> None:
    """Convert a migrated database to the partitioned layout, with the test months."""
    now = int(time.time())
    await convert(conn, now=now, ahead=2)
    for at in (*PARTITION_MONTHS, now - 31 * 86_400):
        await keep_partitions(conn, now=at, ahead=0)


READER = "fitrelay_reader"
"""The read-only role the migrations create for analysts."""


def as_user(dsn: str, user: str) -> str:
    """``dsn`` with its user replaced (and any password dropped)."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
async def reader(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection to the test's database as the read-only role."""
    conn = await asyncpg.connect(as_user(db_dsn, READER))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A PostgreSQL server for the whole session."""
    given = os.environ.get("FITRELAY_TEST_DSN")
    if given:
        yield given
        return
    from relay.storage.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="fitrelay-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture(scope="session")
async def template_db(server_dsn: str) -> AsyncIterator[str]:
    """A database with every migration applied, cloned by :func:`db_dsn`."""
    name = f"{_PREFIX}_tpl"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(with_database(server_dsn, name))
        try:
            await migrate(conn)
            if PARTITIONED:
                await partition_for_tests(conn)
        finally:
            await conn.close()
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def cloned_database(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template, dropped afterwards."""
    name = f"{_PREFIX}_{next(_ids)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield with_database(server_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh migrated database for one test."""
    async with cloned_database(server_dsn, template_db) as dsn:
        yield dsn


@pytest.fixture
async def other_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A second fresh migrated database (for round trips between databases)."""
    async with cloned_database(server_dsn, template_db) as dsn:
        yield dsn


@pytest.fixture
async def store(db_dsn: str) -> AsyncIterator[Store]:
    """The relay's store on the test database (one pool, no event cache)."""
    pool = await create_pool(db_dsn)
    try:
        yield Store(pool, default_limit=100, partitioned=PARTITIONED)
    finally:
        await pool.close()


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(db_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def relay_config(*, indexer: bool = False, metrics: bool = False, **relay: Any) -> Config:
    """A config for tests: port 0 (any free port), overrides per key of [relay]; the
    indexer and the metrics endpoint (on a free port) run only when asked for."""
    tree: dict[str, Any] = {
        "relay": {"port": 1, **relay},
        "indexer": {"enabled": indexer},
        "metrics": {"listen": "127.0.0.1:0" if metrics else ""},
    }
    config = msgspec.convert(tree, Config)
    return msgspec.structs.replace(config, relay=msgspec.structs.replace(config.relay, port=0))


@pytest.fixture
async def start_relay(
    db_dsn: str,
) -> AsyncIterator[Callable[..., Any]]:
    """Start relays on the test database; all are stopped at the end of the test."""
    started: list[Relay] = []

    async def start(config: Config | None = None, dsn: str | None = None) -> Relay:
        relay = Relay(config or relay_config(), dsn or db_dsn)
        await relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in reversed(started):
        await relay.stop()


@pytest.fixture
async def relay(start_relay: Callable[..., Any]) -> Relay:
    result: Relay = await start_relay()
    return result


def url_of(relay: Relay) -> str:
    return f"ws://127.0.0.1:{relay.port}"


@pytest.fixture
async def client(relay: Relay) -> AsyncIterator[RawClient]:
    c = await RawClient.open(url_of(relay))
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def connect(relay: Relay) -> AsyncIterator[Callable[..., Any]]:
    """Open more clients to the test relay; all are closed at the end."""
    opened: list[RawClient] = []

    async def open_client() -> RawClient:
        c = await RawClient.open(url_of(relay))
        opened.append(c)
        return c

    yield open_client
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
