"""The store's connection settings and batch semantics, straight on PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import pytest

from bench.explain import explain
from relay.nostr.event import decode_event
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.storage.postgres import IngestStatus, Store, create_pool
from relay.storage.sqlfilter import compile_count, compile_query
from tests.signer import Keys


def parsed(*events: dict[str, object]) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    raws = [msgspec.json.encode(e) for e in events]
    return [decode_event(r) for r in raws], [r.decode() for r in raws]


async def test_connection_settings(store: Store) -> None:
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SHOW enable_bitmapscan") == "off"


def _scanned(plan: dict[str, Any]) -> int:
    """The most rows any node of an EXPLAIN (ANALYZE, FORMAT JSON) plan produced."""
    return max([plan["Actual Rows"], *(_scanned(child) for child in plan.get("Plans", []))])


async def test_a_prolific_authors_old_notes_are_read_newest_first(store: Store) -> None:
    """One author with 30,000 old notes, 10,000 newer notes by others: the newest 100 of that
    author come from an index read in order that stops after them, whatever the planner's
    estimates (it used to walk everyone's newer notes, or sort all 30,000)."""
    async with store.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO events (id, pubkey, kind, created_at, raw)
            SELECT sha256(('old' || i)::bytea), sha256('prolific'::bytea), 1,
                   1000000 + i, '{}'
            FROM generate_series(1, 30000) AS i;
            INSERT INTO events (id, pubkey, kind, created_at, raw)
            SELECT sha256(('new' || i)::bytea), sha256(('author' || (i % 500))::bytea), 1,
                   2000000 + i, '{}'
            FROM generate_series(1, 10000) AS i;
            ANALYZE events;
            """
        )
        pubkey = await conn.fetchval("SELECT pubkey FROM events WHERE created_at = 1000001")
        flt = parse_filter({"authors": [pubkey.hex()], "kinds": [1], "limit": 100}, Limits())
        sql, args, generic, *_ = compile_query(flt, 0, 100)
        assert generic
        plan = await explain(conn, sql, args)  # the generic plan, as the relay runs it
    root = plan[0]["Plan"]
    assert root["Actual Rows"] == 100
    assert _scanned(root) <= 101


@pytest.mark.parametrize("first", ["rare", "common"])
async def test_one_generic_plan_serves_a_rare_and_a_common_tag(store: Store, first: str) -> None:
    """The trap that once made generic plans 40x slower for tag queries: a plan fitted to
    one value's frequency. The relay's tag SQL reads the tag index in created_at order and
    stops after the limit, so the same generic plan reads at most limit + 1 rows for a tag
    on 20,000 events and for one on 5, whichever value the statement first ran with."""
    async with store.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO events (id, pubkey, kind, created_at, raw)
            SELECT sha256(('ev' || i)::bytea), sha256(('author' || (i % 300))::bytea), 1,
                   1000000 + i, '{}'
            FROM generate_series(1, 20000) AS i;
            INSERT INTO event_tags (event_id, name, value, kind, pubkey, created_at)
            SELECT id, 't', CASE WHEN created_at % 4000 = 0 THEN 'rare' ELSE 'common' END,
                   kind, pubkey, created_at
            FROM events;
            ANALYZE events; ANALYZE event_tags;
            """
        )
        order = ["rare", "common"] if first == "rare" else ["common", "rare"]
        for value in order:
            flt = parse_filter({"#t": [value], "limit": 100}, Limits())
            sql, args, generic, *_ = compile_query(flt, 0, 100)
            assert generic
            for _ in range(6):  # past the five runs after which "auto" would go generic
                await conn.fetch(sql, *args)
            root = (await explain(conn, sql, args))[0]["Plan"]
            assert root["Actual Rows"] == (5 if value == "rare" else 100), value
            assert _scanned(root) <= 101, value


async def test_release_skips_the_reset_round_trip_but_not_its_safety(db_dsn: str) -> None:
    """A released connection gets no reset statement (one round trip less per query), yet
    an open transaction is still rolled back and the relay's settings stay in force."""
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    watcher = await asyncpg.connect(db_dsn)
    try:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.fetchval("SELECT 'last words'")
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend)
        assert last == "SELECT 'last words'"  # nothing was sent on release
        async with pool.acquire() as conn:
            await conn.execute("BEGIN; CREATE TEMP TABLE left_open (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # same session
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await watcher.close()
        await pool.close()


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


async def _stored_ids(store: Store) -> set[str]:
    async with store.pool.acquire() as conn:
        return {r["id"].hex() for r in await conn.fetch("SELECT id FROM events")}


@pytest.mark.parametrize("order", ["target_first", "deletion_first"])
async def test_deleting_an_addressable_version_by_id_is_order_independent(
    db_dsn: str, order: str
) -> None:
    alice = Keys(1)
    v1 = alice.sign(33402, "v1", [["d", "plan"]], created_at=10)
    v2 = alice.sign(33402, "v2", [["d", "plan"]], created_at=20)
    v3 = alice.sign(33402, "v3", [["d", "plan"]], created_at=30)
    deletion = alice.sign(5, "", [["e", v2["id"]]], created_at=40)
    sequence = [v1, v2, deletion] if order == "target_first" else [v1, deletion, v2]
    pool = await create_pool(db_dsn)
    try:
        store = Store(pool, default_limit=100)
        for event in sequence:
            await store.ingest(*parsed(event))
        # Either way the deleted version took the older one with it, and it stays gone.
        assert await _stored_ids(store) == {deletion["id"]}
        assert await store.ingest(*parsed(v1)) == [IngestStatus.ADDRESS_DELETED]
        # A newer version revives the address.
        assert await store.ingest(*parsed(v3)) == [IngestStatus.STORED]
        assert await _stored_ids(store) == {deletion["id"], v3["id"]}
    finally:
        await pool.close()


async def test_a_late_deleted_version_leaves_a_newer_stored_one_alone(store: Store) -> None:
    alice = Keys(1)
    v2 = alice.sign(33402, "v2", [["d", "plan"]], created_at=20)
    v3 = alice.sign(33402, "v3", [["d", "plan"]], created_at=30)
    deletion = alice.sign(5, "", [["e", v2["id"]]], created_at=40)
    for event in (v3, deletion, v2):
        await store.ingest(*parsed(event))
    assert await _stored_ids(store) == {v3["id"], deletion["id"]}


async def test_every_removal_is_logged_in_seq_order(store: Store) -> None:
    alice = Keys(1)
    v1 = alice.sign(33401, "v1", [["d", "x"]], created_at=10)
    v2 = alice.sign(33401, "v2", [["d", "x"]], created_at=20)
    note = alice.sign(1, "n", created_at=10)
    deletion = alice.sign(5, "", [["e", note["id"]]], created_at=30)
    expiring = alice.sign(1, "e", [["expiration", "100"]], created_at=50)
    for event in (v1, note, v2, deletion, expiring):
        await store.ingest(*parsed(event))
    assert await store.purge_expired(now=200) == 1
    async with store.pool.acquire() as conn:
        log = await conn.fetch(
            "SELECT seq, id, 'stored' AS what FROM events"
            " UNION ALL SELECT seq, id, 'removed' FROM removed_events ORDER BY seq"
        )
    kinds = {v1["id"]: "v1", v2["id"]: "v2", note["id"]: "note", deletion["id"]: "deletion"}
    kinds[expiring["id"]] = "expiring"
    assert [(kinds[r["id"].hex()], r["what"]) for r in log] == [
        ("v1", "removed"),  # replaced when v2 arrived: its removal comes before v2
        ("v2", "stored"),
        ("deletion", "stored"),
        ("note", "removed"),
        ("expiring", "removed"),
    ]


async def test_value_dependent_shapes_get_a_plan_for_their_values(db_dsn: str) -> None:
    """Shapes whose SQL has one sensible plan run on the prepared statement's generic plan;
    the rest (ANY over more values than streams are made for, COUNT) get a plan made for
    their values each time, through SET LOCAL, and leave the session's setting as it was."""
    pool = await create_pool(db_dsn, min_size=1, max_size=1)  # one connection: its statements
    store = Store(pool, default_limit=100)
    keys = [Keys(100 + i).pubkey for i in range(40)]
    shapes = {
        "one tag": ({"#t": ["run"], "limit": 10}, True),
        "authors and kinds": ({"authors": keys[:3], "kinds": [1, 1301], "limit": 10}, True),
        "ids": ({"ids": keys[:5]}, True),
        "time only": ({"since": 5, "limit": 10}, True),
        "40 tags": ({"#t": [f"tag{i}" for i in range(40)], "limit": 10}, False),
        "40 authors": ({"authors": keys, "limit": 10}, True),  # index entries first
        "40 authors, 2 kinds": ({"authors": keys, "kinds": [1, 7], "limit": 10}, True),
    }
    try:
        for raw, _generic in shapes.values():
            for _ in range(3):
                await store.query([parse_filter(raw, Limits())], 0)
        for _ in range(2):
            await store.count([parse_filter({"#t": ["run"]}, Limits())], 0)
        async with pool.acquire() as conn:
            prepared = await conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await pool.close()
    runs = {row[0]: (row[1], row[2]) for row in prepared}
    for name, (raw, generic) in shapes.items():
        query = compile_query(parse_filter(raw, Limits()), 0, 10)
        assert query.generic is generic, name
        assert runs[query.sql] == ((3, 0) if generic else (0, 3)), name
        if query.unless_expired is not None:  # nothing stored has expired: never needed
            assert query.unless_expired.sql not in runs, name
    count = compile_count([parse_filter({"#t": ["run"]}, Limits())], 0)
    assert not count.generic and runs[count.sql] == (0, 2)
