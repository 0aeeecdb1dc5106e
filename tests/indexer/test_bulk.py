"""The set-based path (indexer.bulk) against the entry-by-entry one: whatever the order of
arrival, the batch boundaries and where the indexer pauses, both leave the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import follower
from indexer.bulk import NetEffect
from indexer.follower import Indexer, reindex
from indexer.rowcopy import timestamp
from indexer.transform import derive
from relay.nostr.event import decode_event
from relay.storage.postgres import Store
from tests.indexer.scenario import ALICE, EVENTS, strength_exercise
from tests.indexer.tables import TABLES, snapshot
from tests.indexer.test_view_reproducibility import CORPUS

Event = dict[str, Any]
NEVER = 1 << 30  # a bulk_min no batch reaches: entry by entry
PUSH = f"33401:{ALICE.pubkey}:push-up"


def _workout(d: str, at: int, *weights: str) -> Event:
    sets = [["exercise", PUSH, "", w, "12", "7", "normal"] for w in weights]
    tags = [["d", d], ["title", "Push"], ["type", "strength"], ["start", str(at - 600)]]
    tags += [["end", str(at)], ["completed", "true"], *sets]
    return ALICE.sign(1301, "", tags, created_at=at)


PUSH_W1 = _workout("p1", 1_700_000_000, "", "10")

# Versions of one exercise that change only the title (the sets keep their reading and
# only the id they point at changes), then the equipment (a blank weight becomes 0 kg on a
# bodyweight exercise), then the unit; records and a template name it throughout.
EXTRA: dict[str, Event] = {
    "push_v1": strength_exercise(ALICE, "push-up", title="Push-up", at=100),
    "push_v2": strength_exercise(ALICE, "push-up", title="Push up", at=110),
    "push_v3": strength_exercise(ALICE, "push-up", equipment="bodyweight", at=120),
    "push_v4": strength_exercise(
        ALICE, "push-up", equipment="bodyweight", weight_unit="lbs", at=130
    ),
    "push_w1": PUSH_W1,
    "push_w2": _workout("p2", 1_700_100_000, "", "", "20.5"),
    "push_plan": ALICE.sign(
        33402,
        "",
        [
            ["d", "push"],
            ["title", "Push"],
            ["type", "strength"],
            ["exercise", PUSH, "", "", "12", "7", "normal"],
        ],
        created_at=140,
    ),
    "delete_push_w1": ALICE.sign(5, "", [["e", PUSH_W1["id"]]], created_at=1_700_000_001),
}
ALL = {**EVENTS, **EXTRA}


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


async def index(conn: asyncpg.Connection[Any], batch_size: int, bulk_min: int) -> Indexer:
    indexer = Indexer("", batch_size=batch_size, bulk_min=bulk_min)
    await indexer.catch_up(conn)
    return indexer


async def _clear_fitness(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute(
        "TRUNCATE fitness.indexer_state, " + ", ".join(f"fitness.{t}" for t in TABLES)
    )


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute(
        "TRUNCATE events, event_tags, deleted_events, deleted_addresses, removed_events"
    )
    await _clear_fitness(conn)


def _settings(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


@pytest.fixture
async def reference(store: Store, conn: asyncpg.Connection[Any]) -> dict[str, Any]:
    """The tables the entry-by-entry path builds from every event."""
    await publish(store, *ALL.values())
    await index(conn, batch_size=3, bulk_min=NEVER)
    return await snapshot(conn)


@_settings(20)
@given(
    order=st.permutations(list(ALL)),
    pauses=st.sets(st.integers(0, len(ALL) - 1), max_size=6),
    batch=st.integers(1, 40),
)
async def test_any_order_and_batching_gives_the_entry_by_entry_tables(
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
        await publish(store, ALL[name])
        if i in pauses:
            await index(conn, batch_size=batch, bulk_min=1)
    indexer = await index(conn, batch_size=batch, bulk_min=1)
    assert indexer.stats.lag_events == 0
    assert await snapshot(conn) == reference
    await reindex(db_dsn, batch_size=batch, bulk_min=1)
    assert await snapshot(conn) == reference


async def test_the_scenario_reads_through_each_version(
    store: Store, conn: asyncpg.Connection[Any], reference: dict[str, Any]
) -> None:
    """The extra versions do what the module says, in one batch as entry by entry."""
    await _clear_fitness(conn)
    await index(conn, batch_size=1000, bulk_min=1)
    assert await snapshot(conn) == reference
    rows = await conn.fetch(
        "SELECT s.weight_raw, s.weight_kg, s.weight_unit, s.exercise_event_id"
        " FROM fitness.workout_sets s WHERE s.exercise_d = 'push-up' ORDER BY weight_raw"
    )
    v4 = EXTRA["push_v4"]["id"]
    assert [tuple(r.values()) for r in rows] == [
        ("", 0.0, "lbs", v4),  # bodyweight: a blank weight is 0
        ("", 0.0, "lbs", v4),
        ("20.5", pytest.approx(20.5 * 0.45359237), "lbs", v4),
    ]
    plan = await conn.fetchrow(
        "SELECT weight_kg, exercise_event_id FROM fitness.template_sets WHERE template_d = 'push'"
    )
    assert (plan["weight_kg"], plan["exercise_event_id"]) == (None, v4)  # "fill in"


@pytest.mark.parametrize("chunk", [1000, 37])
async def test_a_held_out_corpus_in_one_batch(
    db_dsn: str,
    store: Store,
    conn: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    """One batch, folded whole or in chunks parsed ahead of the writes."""
    monkeypatch.setattr(follower, "CHUNK", chunk)
    await publish(store, *reversed(CORPUS))
    await index(conn, batch_size=7, bulk_min=NEVER)
    entry_by_entry = await snapshot(conn)
    assert len(entry_by_entry["workout_sets"]) > 100
    await _clear_fitness(conn)
    await index(conn, batch_size=100_000, bulk_min=1)
    assert await snapshot(conn) == entry_by_entry
    await reindex(db_dsn, batch_size=64, bulk_min=1)
    assert await snapshot(conn) == entry_by_entry


async def test_a_row_the_database_refuses_sends_the_batch_entry_by_entry(
    store: Store, conn: asyncpg.Connection[Any]
) -> None:
    bad = ALICE.sign(
        33401,
        "",
        [["d", "nul"], ["title", "nul \x00 inside"], ["format", "weight"], ["format_units", "kg"]],
        created_at=100,
    )
    await publish(store, *EVENTS.values(), bad)
    indexer = await index(conn, batch_size=1000, bulk_min=1)
    errors = await conn.fetch(
        "SELECT event_id FROM fitness.index_errors WHERE reason = 'storage_error'"
    )
    assert [r["event_id"] for r in errors] == [bad["id"]]
    assert indexer.stats.errors_by_reason["storage_error"] == 1
    bulk = await snapshot(conn)
    await _clear_fitness(conn)
    await index(conn, batch_size=3, bulk_min=NEVER)
    assert await snapshot(conn) == bulk


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-2e9, max_value=2.5e11, allow_nan=False),
            st.integers(min_value=-2_000_000_000, max_value=250_000_000_000),
            st.floats(min_value=1.5e9, max_value=1.8e9).map(lambda x: round(x, 3)),
        ),
        min_size=1,
        max_size=50,
    )
)
async def test_times_are_computed_as_to_timestamp_computes_them(
    server_dsn: str, values: list[float]
) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        rows = await conn.fetch(
            "SELECT to_timestamp(x) AS t FROM unnest($1::float8[]) WITH ORDINALITY AS u (x, i)"
            " ORDER BY i",
            values,
        )
    finally:
        await conn.close()
    assert [r["t"] for r in rows] == [timestamp(v) for v in values]


def test_a_removal_undoes_an_insertion_of_the_same_run() -> None:
    net = NetEffect()
    for name in ("push_v1", "push_v2"):
        event = decode_event(msgspec.json.encode(EXTRA[name]))
        net.insert(event.id, event.kind, derive(event))
    net.remove(EXTRA["push_v1"]["id"], 33401)  # already replaced: nothing changes
    assert net.exercises[(ALICE.pubkey, "push-up")] is not None
    net.remove(EXTRA["push_v2"]["id"], 33401)
    assert net.exercises[(ALICE.pubkey, "push-up")] is None
    assert EXTRA["push_v2"]["id"] not in net.issues
