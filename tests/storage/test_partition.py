"""The partitioned layout of events (relay.storage.partition): conversion, month partitions
made ahead and filled from the default partition, detaching, and the replace, deletion and
expiration rules across partitions. Each test converts its own database (a no-op when the
suite runs partitioned)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import pytest

from relay.nostr.event import decode_event
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.storage.partition import (
    convert,
    detach_before,
    is_partitioned,
    keep_partitions,
    partitions,
)
from relay.storage.postgres import IngestStatus, Store
from tests.conftest import relay_config
from tests.signer import Keys

FEB_2025 = 1_740_000_000  # 2025-02-19
JUN_2025 = 1_750_813_460  # 2025-06-25
MAR_2024 = 1_710_000_000  # 2024-03-09
KEYS = Keys(41)


def signed(kind: int, content: str, tags: list[list[str]], at: int) -> tuple[Any, str]:
    raw = msgspec.json.encode(KEYS.sign(kind, content, tags, at))
    return decode_event(raw), raw.decode()


async def ingest(store: Store, *events: tuple[Any, str]) -> list[IngestStatus]:
    return await store.ingest([e for e, _ in events], [r for _, r in events])


async def partition_of(db: asyncpg.Connection[Any], event: Any) -> str:
    return str(
        await db.fetchval(
            "SELECT tableoid::regclass::text FROM events WHERE id = $1", bytes.fromhex(event.id)
        )
    )


async def stored_ids(store: Store) -> set[str]:
    flt = parse_filter({"authors": [KEYS.pubkey]}, Limits())
    return {id_.hex() for id_, _ in await store.query([flt], int(time.time()))}


async def test_conversion_keeps_rows_seq_and_the_log_position(
    db: asyncpg.Connection[Any], store: Store
) -> None:
    if await is_partitioned(db):
        pytest.skip("the suite runs partitioned: the template was converted already")
    old = signed(1, "old", [["t", "a"]], MAR_2024)
    far = signed(1, "far", [], 100)
    gone = signed(1, "gone", [], FEB_2025)
    assert await ingest(store, old, far, gone) == [IngestStatus.STORED] * 3
    deletion = signed(5, "", [["e", gone[0].id]], FEB_2025 + 1)
    await ingest(store, deletion)
    before = await db.fetch("SELECT seq, id, raw FROM events ORDER BY seq")
    removed = await db.fetch("SELECT seq, id FROM removed_events ORDER BY seq")
    assert await convert(db, now=int(time.time()), ahead=1)
    assert not await convert(db, now=int(time.time()), ahead=1)
    assert await db.fetch("SELECT seq, id, raw FROM events ORDER BY seq") == before
    assert await db.fetch("SELECT seq, id FROM removed_events ORDER BY seq") == removed
    assert await partition_of(db, old[0]) == "events_p202403"
    assert await partition_of(db, far[0]) == "events_default"
    names = [p.name for p in await partitions(db)]
    assert "events_p202502" in names  # the month of the deletion
    # The log goes on after the last seq drawn before the conversion.
    new = signed(1, "new", [], JUN_2025)
    assert await ingest(store, new) == [IngestStatus.STORED]
    seq = await db.fetchval("SELECT seq FROM events WHERE id = $1", bytes.fromhex(new[0].id))
    assert seq > max(r["seq"] for r in [*before, *removed])
    assert await stored_ids(store) == {old[0].id, far[0].id, deletion[0].id, new[0].id}
    assert await ingest(store, old) == [IngestStatus.DUPLICATE]


async def test_an_id_is_unique_across_partitions(db: asyncpg.Connection[Any]) -> None:
    await convert(db, now=int(time.time()), ahead=1)
    await keep_partitions(db, now=FEB_2025, ahead=0)
    insert = "INSERT INTO events (id, pubkey, kind, created_at, raw) VALUES ($1, $1, 1, $2, '{}')"
    key = b"k" * 32
    await db.execute(insert, key, FEB_2025)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, key, 100)  # the default partition
    await db.execute("DELETE FROM events WHERE id = $1", key)
    await db.execute(insert, key, 100)
    assert await db.fetchval("SELECT created_at FROM event_keys WHERE id = $1", key) == 100


async def test_a_new_month_partition_takes_its_rows_from_the_default(
    db: asyncpg.Connection[Any], store: Store
) -> None:
    await convert(db, now=int(time.time()), ahead=1)
    moved = signed(1, "in 2023-08", [["t", "x"]], 1_692_000_000)
    stays = signed(1, "in 2023-09", [], 1_694_000_000)
    await ingest(store, moved, stays)
    assert await partition_of(db, moved[0]) == "events_default"
    seq = await db.fetchval("SELECT seq FROM events WHERE id = $1", bytes.fromhex(moved[0].id))
    removals = await db.fetchval("SELECT count(*) FROM removed_events")
    assert await keep_partitions(db, now=1_692_000_000, ahead=0) == 1
    assert await keep_partitions(db, now=1_692_000_000, ahead=0) == 0
    assert await partition_of(db, moved[0]) == "events_p202308"
    assert await partition_of(db, stays[0]) == "events_default"
    assert (
        await db.fetchval("SELECT seq FROM events WHERE id = $1", bytes.fromhex(moved[0].id)) == seq
    )
    assert await db.fetchval("SELECT count(*) FROM removed_events") == removals
    assert await ingest(store, moved) == [IngestStatus.DUPLICATE]
    flt = parse_filter({"#t": ["x"], "since": 1_691_000_000}, Limits())
    assert [i.hex() for i, _ in await store.query([flt], int(time.time()))] == [moved[0].id]


async def test_replacement_deletion_and_expiration_across_months(
    db: asyncpg.Connection[Any], store: Store
) -> None:
    await convert(db, now=int(time.time()), ahead=1)
    for at in (FEB_2025, JUN_2025):
        await keep_partitions(db, now=at, ahead=0)
    v1 = signed(30023, "v1", [["d", "plan"]], FEB_2025)
    v2 = signed(30023, "v2", [["d", "plan"]], JUN_2025)
    note = signed(1, "note", [], FEB_2025)
    brief = signed(1, "brief", [["expiration", str(FEB_2025 + 10)]], FEB_2025)
    assert await ingest(store, v1, note, brief) == [IngestStatus.STORED] * 3
    assert await ingest(store, v2) == [IngestStatus.STORED]
    assert await partition_of(db, v2[0]) == "events_p202506"
    assert await ingest(store, v1) == [IngestStatus.SUPERSEDED]
    assert await store.purge_expired(int(time.time())) == 1
    # A deletion in June removes the February note, by id.
    assert await ingest(store, signed(5, "", [["e", note[0].id]], JUN_2025 + 1)) == [
        IngestStatus.STORED
    ]
    assert await ingest(store, note) == [IngestStatus.DELETED]
    left = await stored_ids(store)
    assert v2[0].id in left and not {v1[0].id, note[0].id, brief[0].id} & left
    removed = {r[0].hex() for r in await db.fetch("SELECT id FROM removed_events")}
    assert {v1[0].id, note[0].id, brief[0].id} <= removed
    assert await db.fetchval("SELECT count(*) FROM event_keys") == await db.fetchval(
        "SELECT count(*) FROM events"
    )


async def test_detached_months_leave_the_relays_view(
    db: asyncpg.Connection[Any], store: Store
) -> None:
    await convert(db, now=int(time.time()), ahead=1)
    for at in (FEB_2025, JUN_2025):
        await keep_partitions(db, now=at, ahead=0)
    old = signed(1, "old", [], FEB_2025)
    kept = signed(1, "kept", [], JUN_2025)
    await ingest(store, old, kept)
    detached = await detach_before(db, 1_748_736_000)  # 2025-06-01
    assert "events_p202502" in detached and "events_p202506" not in detached
    names = [p.name for p in await partitions(db)]
    assert "events_p202502" not in names and "events_p202506" in names
    assert await stored_ids(store) == {kept[0].id}
    archived = await db.fetchval("SELECT count(*) FROM events_p202502")
    assert archived == 1  # still in the database, as a plain table
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1
    # Its month has no partition now: sent again, the event is stored in the default.
    assert await ingest(store, old) == [IngestStatus.STORED]
    assert await partition_of(db, old[0]) == "events_default"


async def test_serve_with_monthly_partitioning_converts_and_keeps_months_ahead(
    db: asyncpg.Connection[Any], start_relay: Callable[..., Any]
) -> None:
    config = relay_config()
    db_config = msgspec.structs.replace(config.db, partitioning="monthly", partitions_ahead=3)
    relay = await start_relay(msgspec.structs.replace(config, db=db_config))
    assert relay.partitioned and relay.keeper is not None
    await asyncio.wait_for(relay.keeper.kept.wait(), 30)
    assert await is_partitioned(db)
    names = {p.name for p in await partitions(db)}
    now = datetime.datetime.now(datetime.UTC).date().replace(day=1)
    for ahead in range(4):
        month = (now.month - 1 + ahead) % 12 + 1
        year = now.year + (now.month - 1 + ahead) // 12
        assert f"events_p{year}{month:02d}" in names
