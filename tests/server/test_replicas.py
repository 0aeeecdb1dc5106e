"""Reads on a real hot standby: a primary of the module's own and a standby streaming from it
(``pg_basebackup -R``, :mod:`bench.standby`), with ``db.read_dsns`` naming the standby.

Each test gets a fresh database cloned on the primary (the clone replays to the standby).
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest

from bench.standby import StreamingCluster, streaming_cluster
from indexer.export import export_table
from indexer.follower import Indexer
from relay.app import Relay
from relay.storage.migrate import migrate
from relay.storage.replicas import Replicas
from tests.client import RawClient
from tests.conftest import READER, as_user, relay_config, url_of
from tests.indexer.scenario import strength_exercise
from tests.signer import Keys, unique_content

pytestmark = pytest.mark.slow

_TEMPLATE = "fitrelay_replica_tpl"
_ids = itertools.count()


@pytest.fixture(scope="module")
def streaming() -> Iterator[StreamingCluster]:
    """One primary and one standby for the module, with a migrated template database."""
    with streaming_cluster(1) as cluster:

        async def prepare() -> None:
            admin = await asyncpg.connect(cluster.primary_dsn)
            try:
                await admin.execute(f'CREATE DATABASE "{_TEMPLATE}"')
            finally:
                await admin.close()
            conn = await asyncpg.connect(cluster.primary_database(_TEMPLATE))
            try:
                await migrate(conn)
            finally:
                await conn.close()

        asyncio.run(prepare())
        yield cluster


@pytest.fixture
async def pair(streaming: StreamingCluster) -> AsyncIterator[tuple[str, str]]:
    """``(primary DSN, standby DSN)`` of a fresh database, once the standby has it."""
    name = f"fitrelay_replica_{next(_ids)}"
    admin = await asyncpg.connect(streaming.primary_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
        standby = streaming.standbys[0].dsn(name)
        async with asyncio.timeout(30):
            while True:  # the standby replays CREATE DATABASE shortly
                try:
                    conn = await asyncpg.connect(standby)
                except asyncpg.InvalidCatalogNameError:
                    await asyncio.sleep(0.05)
                    continue
                await conn.close()
                break
        yield streaming.primary_database(name), standby
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def replica_config(primary: str, standby: str, **relay: Any) -> Any:
    # Without the in-memory mirror, which would answer the reads these tests route.
    config = relay_config(**{"mirror_events": 0, **relay})
    db = msgspec.structs.replace(
        config.db,
        dsn=primary,
        read_dsns=[standby],
        replica_poll_ms=50,
        replica_max_lag_ms=400,
        replica_retry_max_ms=400,
    )
    return msgspec.structs.replace(config, db=db)


@pytest.fixture
async def start(pair: tuple[str, str]) -> AsyncIterator[Callable[..., Any]]:
    started: list[Relay] = []

    async def start_relay(config: Any) -> Relay:
        relay = Relay(config, config.db.dsn or pair[0])
        await relay.start()
        started.append(relay)
        return relay

    yield start_relay
    for relay in reversed(started):
        await relay.stop()


async def until(replicas: Replicas, predicate: Callable[[], bool], timeout: float = 20) -> None:
    """Wait (poll round by poll round) until ``predicate()`` holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            replicas.polled.clear()
            await replicas.polled.wait()


def replicas_of(relay: Relay) -> Replicas:
    assert relay.replicas is not None
    return relay.replicas


async def test_req_after_own_write_reads_it_and_quiet_reads_run_on_the_replica(
    pair: tuple[str, str], start: Callable[..., Any]
) -> None:
    relay: Relay = await start(replica_config(*pair))
    replicas = replicas_of(relay)
    replica = replicas.replicas[0]
    await until(replicas, lambda: bool(replicas.usable()))
    keys = Keys(51)
    author = keys.sign()["pubkey"]
    client = await RawClient.open(url_of(relay))
    try:
        published = []
        for i in range(15):
            event = keys.sign(1, unique_content("own"))
            assert (await client.publish(event))[2] is True
            published.append(event["id"])
            # Wherever it runs, the REQ right after the OK sees the write.
            assert await client.req(f"own{i}", {"ids": [event["id"]]}) == [event]
            await client.send(["COUNT", f"c{i}", {"authors": [author]}])
            assert (await client.expect("COUNT"))[1:] == [f"c{i}", {"count": i + 1}]
            await client.send(["CLOSE", f"own{i}"])
        # Once the standby has replayed the horizon, a read runs there.
        await until(replicas, lambda: replica.replay >= replicas.horizon)
        reads = replica.reads
        got = await client.req("all", {"authors": [author], "limit": 50})
        assert sorted(e["id"] for e in got) == sorted(published)
        assert replica.reads == reads + 1
    finally:
        await client.close()


async def test_paused_replay_sends_reads_to_the_primary(
    pair: tuple[str, str], start: Callable[..., Any], streaming: StreamingCluster
) -> None:
    """Lag injected with pg_wal_replay_pause(): a REQ after a write, or after an event the
    connection was sent live, still sees it (on the primary); a replica further behind than
    db.replica_max_lag_ms is taken out, and used again once it has caught up."""
    primary, standby_dsn = pair
    relay: Relay = await start(replica_config(primary, standby_dsn, cache={"enabled": False}))
    other: Relay = await start(relay_config())  # another host, on the primary only
    replicas = replicas_of(relay)
    replica = replicas.replicas[0]
    await until(replicas, lambda: bool(replicas.usable()))
    standby = await asyncpg.connect(standby_dsn)
    client = await RawClient.open(url_of(relay))
    publisher = await RawClient.open(url_of(other))
    keys = Keys(52)
    author = keys.sign()["pubkey"]
    try:
        assert await client.req("live", {"kinds": [1]}) == []
        await standby.execute("SELECT pg_wal_replay_pause()")
        reads, behind = replica.reads, replicas.fallbacks["behind"]
        own = keys.sign(1, unique_content("paused"))
        assert (await client.publish(own))[2] is True
        assert (await client.expect("EVENT"))[1:] == ["live", own]
        assert await client.req("own", {"ids": [own["id"]]}) == [own]
        assert replica.reads == reads and replicas.fallbacks["behind"] == behind + 1
        # Written through the other host: sent here live, then any REQ here has it.
        theirs = keys.sign(1, unique_content("elsewhere"))
        assert (await publisher.publish(theirs))[2] is True
        assert (await client.expect("EVENT"))[1:] == ["live", theirs]
        assert await client.req("theirs", {"ids": [theirs["id"]]}) == [theirs]
        assert replica.reads == reads
        # Writes go on; the paused standby falls past the bound and is left out.
        for _ in range(3):
            assert (await client.publish(keys.sign(1, unique_content("more"))))[2] is True
        await until(replicas, lambda: not replicas.usable())
        assert replica.lag_seconds > 0.4 and replica.lag_bytes > 0
        none = replicas.fallbacks["none"]
        assert len(await client.req("all", {"authors": [author]})) == 5
        assert replicas.fallbacks["none"] == none + 1
        await standby.execute("SELECT pg_wal_replay_resume()")
        await until(
            replicas, lambda: bool(replicas.usable()) and replica.replay >= replicas.horizon
        )
        assert len(await client.req("again", {"authors": [author]})) == 5
        assert replica.reads == reads + 1
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")
        await standby.close()
        await client.close()
        await publisher.close()


async def test_a_replica_stopped_mid_load_is_taken_out_and_comes_back(
    pair: tuple[str, str], start: Callable[..., Any], streaming: StreamingCluster
) -> None:
    relay: Relay = await start(replica_config(*pair, cache={"enabled": False}))
    replicas = replicas_of(relay)
    replica = replicas.replicas[0]
    await until(replicas, lambda: bool(replicas.usable()))
    keys = Keys(53)
    author = keys.sign()["pubkey"]
    writer = await RawClient.open(url_of(relay))
    for _ in range(5):
        assert (await writer.publish(keys.sign(1, unique_content("load"))))[2] is True
    await until(replicas, lambda: replica.replay >= replicas.horizon)
    answered = [0]
    stop, progress = asyncio.Event(), asyncio.Event()

    async def answers(at_least: int) -> None:
        async with asyncio.timeout(30):
            while answered[0] < at_least:
                progress.clear()
                await progress.wait()

    async def reader(n: int) -> None:
        client = await RawClient.open(url_of(relay))
        try:
            for i in itertools.count():
                if stop.is_set():
                    return
                got = await client.req(f"r{i}", {"authors": [author], "limit": 5})
                assert len(got) == 5  # never CLOSED, never short
                await client.send(["CLOSE", f"r{i}"])
                answered[0] += 1
                progress.set()
        finally:
            await client.close()

    readers = [asyncio.create_task(reader(n)) for n in range(4)]
    try:
        await until(replicas, lambda: replica.reads >= 20)
        await asyncio.to_thread(streaming.standbys[0].stop)
        await until(replicas, lambda: not replica.up)
        at_stop = answered[0]
        await answers(at_stop + 20)  # the relay keeps answering, from the primary
        assert replicas.primary_reads >= 20
        await asyncio.to_thread(streaming.standbys[0].start)
        await until(replicas, lambda: replica.up and replica.replay >= replicas.horizon)
        reads = replica.reads
        await until(replicas, lambda: replica.reads >= reads + 10)  # retried, serving again
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await writer.close()
        if not (streaming.standbys[0].data / "postmaster.pid").exists():
            await asyncio.to_thread(streaming.standbys[0].start)


async def replayed(standby: str, primary: str) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    conn = await asyncpg.connect(primary)
    try:
        target = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
    finally:
        await conn.close()
    conn = await asyncpg.connect(standby)
    try:
        async with asyncio.timeout(20):
            while not await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                await asyncio.sleep(0.02)  # replay has no notification to wait on
    finally:
        await conn.close()


async def test_researchers_query_the_standby_as_the_reader_role(
    pair: tuple[str, str], start: Callable[..., Any]
) -> None:
    """The research set-up of docs/scaling.md: fitness tables indexed on the primary are
    read, and exported, on the standby as fitrelay_reader, which can write nothing there."""
    primary, standby = pair
    relay: Relay = await start(relay_config())
    client = await RawClient.open(url_of(relay))
    try:
        keys = Keys(54)
        assert (await client.publish(strength_exercise(keys, "squat")))[2] is True
    finally:
        await client.close()
    conn = await asyncpg.connect(primary)
    try:
        await Indexer(primary).catch_up(conn)
    finally:
        await conn.close()
    await replayed(standby, primary)
    out = io.BytesIO()
    assert await export_table(as_user(standby, READER), "exercises", "csv", out) == 1
    assert b"squat" in out.getvalue()
    reader = await asyncpg.connect(as_user(standby, READER))
    try:
        assert await reader.fetchval("SELECT pg_is_in_recovery()") is True
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await reader.execute("CREATE TEMP TABLE scratch (x int)")
    finally:
        await reader.close()
