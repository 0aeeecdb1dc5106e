"""Runaway queries: past ``query_timeout_ms`` a REQ gets CLOSED and a COUNT gets CLOSED, the
connection and the pool carry on, and no pooled connection is left in a transaction or with
a changed plan setting (the custom-plan shapes run inside a transaction of their own)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

AUTHORS = [Keys(200 + i).pubkey for i in range(40)]

SHAPES = {
    "generic plan": {"kinds": [1], "limit": 5},
    "custom plan": {"authors": AUTHORS, "limit": 5},  # 40 authors: past the stream limit
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_query_past_the_timeout_is_closed_and_the_relay_carries_on(
    start_relay: Any, db_dsn: str, shape: str
) -> None:
    # The queries must reach PostgreSQL: without the in-memory mirror.
    relay: Relay = await start_relay(relay_config(query_timeout_ms=300, mirror_events=0))
    client = await RawClient.open(url_of(relay))
    note = Keys(200).sign(1, "before the lock")
    assert (await client.publish(note))[2]
    blocker = await asyncpg.connect(db_dsn)
    try:
        # Another session holds the table: every read of it waits until this transaction ends.
        await blocker.execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        await client.send(["REQ", "slow", SHAPES[shape]])
        closed = await client.expect("CLOSED", timeout=10)
        assert closed[1] == "slow" and closed[2].startswith("error: query took too long")
        await client.send(["COUNT", "slow-count", SHAPES[shape]])
        closed = await client.expect("CLOSED", timeout=10)
        assert closed[1] == "slow-count" and closed[2].startswith("error: count took too long")
        await blocker.execute("ROLLBACK")
        async with asyncio.timeout(10):
            got = await client.req("after", SHAPES[shape])
        assert [e["id"] for e in got] == [note["id"]]
        registry = relay.metrics.registry
        assert registry.get_sample_value("fitrelay_queries_cancelled_total") == 2
        pool = relay.pool
        assert pool is not None
        held = [await pool.acquire() for _ in range(pool.get_size())]  # every one of them
        try:
            for conn in held:
                assert not conn.is_in_transaction()
                assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        finally:
            for conn in held:
                await pool.release(conn)
    finally:
        await blocker.close()
        await client.close()


async def test_the_writer_is_not_under_the_query_timeout(start_relay: Any) -> None:
    """D6: the writer has its own pool and its own bound, so a query timeout far below any
    commit's duration refuses no EVENT on a healthy database."""
    relay: Relay = await start_relay(relay_config(query_timeout_ms=1))
    clients = [await RawClient.open(url_of(relay)) for _ in range(4)]
    try:
        keys = Keys(300)
        batches = [[keys.sign(1, f"note {c}-{i}") for i in range(50)] for c in range(4)]
        for client, batch in zip(clients, batches, strict=True):
            for event in batch:
                await client.send(["EVENT", event])
        oks = []
        for client, batch in zip(clients, batches, strict=True):
            for _ in batch:
                oks.append(await client.expect("OK"))
        assert [ok for ok in oks if ok[2] is not True] == []
        assert relay.write_pool is not None and relay.write_pool is not relay.pool
        async with relay.write_pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "1min"
    finally:
        for client in clients:
            await client.close()
