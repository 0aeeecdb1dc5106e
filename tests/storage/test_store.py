"""The store's connection settings and batch semantics, straight on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from relay.nostr.event import decode_event
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.signer import Keys


@pytest.fixture
async def store(db_dsn: str) -> AsyncIterator[Store]:
    pool = await create_pool(db_dsn)
    try:
        yield Store(pool, default_limit=100)
    finally:
        await pool.close()


def parsed(*events: dict[str, object]) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    raws = [msgspec.json.encode(e) for e in events]
    return [decode_event(r) for r in raws], [r.decode() for r in raws]


async def test_connections_avoid_the_generic_plan_trap(store: Store) -> None:
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        assert await conn.fetchval("SHOW jit") == "off"


async def test_one_batch_applies_rules_in_arrival_order(store: Store) -> None:
    alice = Keys(1)
    note = alice.sign(1, "n", created_at=10)
    v1 = alice.sign(33401, "v1", [["d", "row"]], created_at=10)
    v2 = alice.sign(33401, "v2", [["d", "row"]], created_at=20)
    v0 = alice.sign(33401, "v0", [["d", "row"]], created_at=5)
    deletion = alice.sign(5, "", [["e", note["id"]]], created_at=30)
    events, raws = parsed(note, v1, v2, v0, note, deletion, note)
    statuses = await store.ingest(events, raws)
    assert statuses == [
        IngestStatus.STORED,
        IngestStatus.STORED,
        IngestStatus.STORED,
        IngestStatus.SUPERSEDED,
        IngestStatus.DUPLICATE,
        IngestStatus.STORED,
        IngestStatus.DELETED,
    ]
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id FROM events ORDER BY seq")
        tags = await conn.fetchval("SELECT count(*) FROM event_tags")
    assert [r["id"].hex() for r in rows] == [v2["id"], deletion["id"]]
    assert tags == 2  # v2's d tag and the deletion's e tag; nothing left of note or v1


async def test_log_positions_increase(store: Store) -> None:
    keys = Keys(2)
    start = await store.head_seq()
    events, raws = parsed(*(keys.sign(1, str(i)) for i in range(5)))
    await store.ingest(events, raws)
    rows = await store.tail(start, 100)
    assert [r.raw for r in rows] == raws
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert await store.head_seq() == rows[-1].seq
    assert await store.tail(rows[-1].seq, 100) == []
