"""The indexer against real PostgreSQL: the log applied incrementally, in any order, with
crashes, always gives the tables a rebuild gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import store as store_module
from indexer.follower import Indexer, reindex
from relay.nostr.event import decode_event
from relay.storage.notify import CommitListener
from relay.storage.postgres import Store
from relay.storage.queries import load_queries
from tests.indexer.scenario import ALICE, BOB, EVENTS
from tests.indexer.tables import TABLES, snapshot

Event = dict[str, Any]


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await asyncpg.connect(db_dsn)
    try:
        yield c
    finally:
        await c.close()


async def publish(store: Store, *events: Event) -> None:
    for event in events:
        raw = msgspec.json.encode(event)
        await store.ingest([decode_event(raw)], [raw.decode()])


async def index(conn: asyncpg.Connection[Any], batch_size: int = 4) -> Indexer:
    indexer = Indexer("", batch_size=batch_size)
    await indexer.catch_up(conn)
    return indexer


async def rebuilt(db_dsn: str, conn: asyncpg.Connection[Any]) -> dict[str, Any]:
    await reindex(db_dsn, batch_size=3)
    return await snapshot(conn)


async def test_scenario_tables(store: Store, conn: asyncpg.Connection[Any]) -> None:
    await publish(store, *EVENTS.values())
    indexer = await index(conn)
    e = EVENTS
    exercises = await conn.fetch("SELECT pubkey, d, event_id FROM fitness.exercises")
    assert {(r["pubkey"], r["d"]): r["event_id"] for r in exercises} == {
        (ALICE.pubkey, "squat"): e["squat_v2"]["id"],  # the foreign deletion did nothing
        (ALICE.pubkey, "plank"): e["plank"]["id"],
        (BOB.pubkey, "squat"): e["bob_squat"]["id"],  # same d, another author
    }
    template = await conn.fetchrow("SELECT * FROM fitness.templates")
    assert template["event_id"] == e["plan_v2"]["id"]
    sets = await conn.fetch(
        "SELECT exercise_d, exercise_event_id, set_number, group_number"
        " FROM fitness.template_sets ORDER BY position"
    )
    squat_id = e["squat_v2"]["id"]
    assert [tuple(r.values()) for r in sets] == [
        ("squat", squat_id, 1, 1),
        ("bench", None, 1, 1),  # bench was deleted by address: kept, unresolved
        ("squat", squat_id, 2, 2),
        ("bench", None, 2, 2),
    ]
    workouts = await conn.fetch("SELECT event_id, dialect, template_event_id FROM fitness.workouts")
    assert {r["event_id"]: (r["dialect"], r["template_event_id"]) for r in workouts} == {
        e["record_1"]["id"]: ("nip101e", e["plan_v2"]["id"]),  # linked to the current version
        e["record_legacy"]["id"]: ("nip101e", None),
        e["run"]["id"]: ("runstr", None),
    }
    record_sets = await conn.fetch(
        "SELECT exercise_d, exercise_event_id FROM fitness.workout_sets"
        " WHERE workout_event_id = $1 ORDER BY position",
        e["record_1"]["id"],
    )
    assert [tuple(r.values()) for r in record_sets] == [
        ("squat", squat_id),
        ("squat", squat_id),
        ("bench", None),
    ]
    non_workouts = await conn.fetch("SELECT event_id FROM fitness.non_workouts")
    assert [r["event_id"] for r in non_workouts] == [e["mail"]["id"]]
    lists = await conn.fetch("SELECT event_id FROM fitness.lists")
    assert [r["event_id"] for r in lists] == [e["pack_v2"]["id"]]
    items = await conn.fetchval("SELECT count(*) FROM fitness.list_items")
    assert items == 2
    assert indexer.stats.lag_events == 0
    assert indexer.stats.removals_applied >= 4  # squat v1, plan v1, bench, record 2
    # The unresolved references: 2 template sets, 1 record set, 1 legacy set and the pack's
    # member naming bench.
    assert indexer.stats.unresolved_references == 5
    members = "SELECT member_d FROM fitness.list_items ORDER BY position"
    assert [r["member_d"] for r in await conn.fetch(members)] == ["bench", "plank"]
    # Applied removals stay a minute for the relay processes' log tails, then are pruned.
    assert await conn.fetchval("SELECT count(*) FROM removed_events") >= 4
    await conn.execute("UPDATE removed_events SET removed_at = removed_at - interval '61 s'")
    last = await conn.fetchval("SELECT max(seq) FROM removed_events")
    await conn.execute(load_queries("indexer.sql")["prune_removals"], last)
    assert await conn.fetchval("SELECT count(*) FROM removed_events") == 0


async def test_incremental_equals_reindex(
    db_dsn: str, store: Store, conn: asyncpg.Connection[Any]
) -> None:
    for event in EVENTS.values():
        await publish(store, event)
        await index(conn, batch_size=2)
    incremental = await snapshot(conn)
    assert incremental["workouts"], "the scenario indexes something"
    assert await rebuilt(db_dsn, conn) == incremental


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    tables = ", ".join(f"fitness.{t}" for t in TABLES)
    await conn.execute(
        "TRUNCATE events, event_tags, deleted_events, deleted_addresses, removed_events,"
        f" fitness.indexer_state, {tables}"
    )


def _settings(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


@pytest.fixture
async def reference(db_dsn: str, store: Store, conn: asyncpg.Connection[Any]) -> dict[str, Any]:
    await publish(store, *EVENTS.values())
    await index(conn)
    return await snapshot(conn)


@_settings(25)
@given(
    order=st.permutations(list(EVENTS)),
    pauses=st.sets(st.integers(0, len(EVENTS) - 1), max_size=6),
    batch=st.integers(1, 7),
)
async def test_any_order_gives_the_same_tables(
    db_dsn: str,
    store: Store,
    conn: asyncpg.Connection[Any],
    reference: dict[str, Any],
    order: list[str],
    pauses: set[int],
    batch: int,
) -> None:
    await _reset(conn)
    for i, name in enumerate(order):
        await publish(store, EVENTS[name])
        if i in pauses:  # the indexer runs part-way through the arrivals
            await index(conn, batch_size=batch)
    await index(conn, batch_size=batch)
    assert await snapshot(conn) == reference
    assert await rebuilt(db_dsn, conn) == reference


class Crash(Exception):
    pass


async def test_a_crash_mid_batch_changes_nothing(
    db_dsn: str,
    store: Store,
    conn: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await publish(store, *EVENTS.values())
    writes = 0
    real_write = store_module.FitnessStore.write

    async def failing_write(self: Any, *args: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 6:  # inside the second batch
            raise Crash
        await real_write(self, *args)

    monkeypatch.setattr(store_module.FitnessStore, "write", failing_write)
    indexer = Indexer(db_dsn, batch_size=4)
    with pytest.raises(Crash):
        await indexer.catch_up(conn)
    head = await conn.fetchval("SELECT max(seq) FROM events")
    checkpoint = await conn.fetchval("SELECT last_seq FROM fitness.indexer_state")
    assert checkpoint is not None and 0 < checkpoint < head  # the first batch committed
    monkeypatch.setattr(store_module.FitnessStore, "write", real_write)
    await Indexer(db_dsn, batch_size=4).catch_up(conn)
    resumed = await snapshot(conn)
    assert await rebuilt(db_dsn, conn) == resumed


async def test_a_second_run_changes_nothing(store: Store, conn: asyncpg.Connection[Any]) -> None:
    await publish(store, *EVENTS.values())
    await index(conn)
    first = await snapshot(conn)
    await conn.execute("UPDATE fitness.indexer_state SET last_seq = last_seq")
    indexer = await index(conn)
    assert indexer.stats.events_indexed == 0
    assert await snapshot(conn) == first


async def test_follows_new_commits_through_notify(db_dsn: str, store: Store) -> None:
    caught_up = asyncio.Queue[None]()
    indexer = Indexer(db_dsn, batch_size=10)
    listener = CommitListener(db_dsn)
    listener.subscribe(indexer.wake)
    listening = asyncio.create_task(listener.run())
    task = asyncio.create_task(indexer.run(on_caught_up=lambda: caught_up.put_nowait(None)))
    try:
        async with asyncio.timeout(20):
            await caught_up.get()
            await publish(store, EVENTS["squat_v1"])
            while indexer.stats.events_indexed < 1:
                await caught_up.get()
            await publish(store, EVENTS["squat_v2"])
            while indexer.stats.events_indexed < 2:
                await caught_up.get()
        async with store.pool.acquire() as c:
            current = await c.fetchval("SELECT event_id FROM fitness.exercises")
        assert current == EVENTS["squat_v2"]["id"]
    finally:
        task.cancel()
        listening.cancel()
        await asyncio.gather(task, listening, return_exceptions=True)


async def test_an_event_the_database_cannot_store_is_recorded_and_skipped(
    store: Store, conn: asyncpg.Connection[Any]
) -> None:
    bad = ALICE.sign(
        33401,
        "",
        [["d", "nul"], ["title", "nul \x00 inside"], ["format", "weight"], ["format_units", "kg"]],
        created_at=100,
    )
    await publish(store, bad, EVENTS["plank"])
    indexer = await index(conn)
    errors = await conn.fetch("SELECT event_id, reason FROM fitness.index_errors")
    assert [(r["event_id"], r["reason"]) for r in errors] == [(bad["id"], "storage_error")]
    exercises = await conn.fetch("SELECT event_id FROM fitness.exercises")
    assert [r["event_id"] for r in exercises] == [EVENTS["plank"]["id"]]
    assert indexer.stats.errors_by_reason["storage_error"] == 1
    assert indexer.stats.lag_events == 0
