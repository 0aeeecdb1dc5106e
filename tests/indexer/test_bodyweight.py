"""Blank bodyweight weights (NIP-101e v1 to v3 write ``""``) against real PostgreSQL: a
performed set on a ``bodyweight`` exercise is 0 kg, whatever order the record and the
exercise arrive in, and is read again when the exercise is replaced or removed; template
sets and other equipment keep NULL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from indexer.follower import Indexer, reindex
from relay.nostr.event import decode_event
from relay.storage.postgres import Store
from tests.indexer.scenario import strength_exercise
from tests.indexer.tables import snapshot
from tests.signer import Keys

Event = dict[str, Any]

ATHLETE = Keys(201)
COACH = Keys(202)
PUSH_UP = f"33401:{COACH.pubkey}:push-up"
SQUAT = f"33401:{COACH.pubkey}:squat"


def exercise(d: str, equipment: str, at: int) -> Event:
    return strength_exercise(
        COACH, d, equipment=equipment, set_types="warmup|normal|drop|failure",
        hashtags=["chest"], at=at,
    )  # fmt: skip


RECORD = ATHLETE.sign(
    1301,
    "",
    [
        ["d", "w1"],
        ["title", "Push day"],
        ["type", "strength"],
        ["start", "1742703570"],
        ["end", "1742707170"],
        ["completed", "true"],
        ["exercise", PUSH_UP, "", "", "12", "7", "normal"],
        ["exercise", PUSH_UP, "", "", "10", "8", "normal"],
        ["exercise", PUSH_UP, "", "0", "8", "9", "normal"],
        ["exercise", SQUAT, "", "", "5", "8", "normal"],
        ["exercise", SQUAT, "", "100", "5", "8", "normal"],
    ],
    created_at=1742707170,
)
TEMPLATE = COACH.sign(
    33402,
    "",
    [
        ["d", "push"],
        ["title", "Push"],
        ["type", "strength"],
        ["exercise", PUSH_UP, "", "", "12", "7", "normal"],
        ["exercise", PUSH_UP, "", "0", "10", "7", "normal"],
    ],
    created_at=100,
)
PUSH_UP_BODYWEIGHT = exercise("push-up", "bodyweight", 100)
PUSH_UP_WEIGHTED = exercise("push-up", "barbell", 200)  # replaced: now a weighted push-up
SQUAT_BARBELL = exercise("squat", "barbell", 100)


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await asyncpg.connect(db_dsn)
    try:
        yield c
    finally:
        await c.close()


async def publish(store: Store, conn: asyncpg.Connection[Any], *events: Event) -> None:
    """Store the events one at a time, indexing after each."""
    for event in events:
        raw = msgspec.json.encode(event)
        await store.ingest([decode_event(raw)], [raw.decode()])
        await Indexer("", batch_size=3).catch_up(conn)


async def record_weights(conn: asyncpg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT exercise_d, weight_raw, weight_kg FROM fitness.workout_sets ORDER BY position"
    )
    return [tuple(r.values()) for r in rows]


async def template_weights(conn: asyncpg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT weight_raw, weight_kg, exercise_event_id IS NOT NULL AS resolved"
        " FROM fitness.template_sets ORDER BY position"
    )
    return [tuple(r.values()) for r in rows]


RESOLVED_BODYWEIGHT = [
    ("push-up", "", 0.0),
    ("push-up", "", 0.0),
    ("push-up", "0", 0.0),
    ("squat", "", None),  # barbell: a blank weight was not recorded
    ("squat", "100", 100.0),
]
UNRESOLVED = [
    ("push-up", "", None),
    ("push-up", "", None),
    ("push-up", "0", 0.0),
    ("squat", "", None),
    ("squat", "100", 100.0),
]


@pytest.mark.parametrize(
    "order",
    [
        [PUSH_UP_BODYWEIGHT, SQUAT_BARBELL, RECORD],  # exercise first
        [RECORD, PUSH_UP_BODYWEIGHT, SQUAT_BARBELL],  # record first, relinked later
    ],
    ids=["exercise-first", "record-first"],
)
async def test_blank_weight_on_bodyweight_is_zero(
    db_dsn: str, store: Store, conn: asyncpg.Connection[Any], order: list[Event]
) -> None:
    await publish(store, conn, *order)
    assert await record_weights(conn) == RESOLVED_BODYWEIGHT
    volume = await conn.fetch(
        "SELECT exercise_d, sets, reps, volume_kg FROM fitness.weekly_volume_by_exercise"
        " ORDER BY exercise_d"
    )
    assert [tuple(r.values()) for r in volume] == [
        ("push-up", 3, 30.0, 0.0),
        ("squat", 2, 10.0, 500.0),
    ]
    best = await conn.fetchrow(
        "SELECT max_weight_kg, max_set_volume_kg FROM fitness.personal_records"
        " WHERE exercise_d = 'push-up'"
    )
    assert tuple(best.values()) == (0.0, 0.0)
    before = await snapshot(conn)
    await reindex(db_dsn, batch_size=2)
    assert await snapshot(conn) == before


async def test_record_before_its_exercise_waits_unresolved(
    store: Store, conn: asyncpg.Connection[Any]
) -> None:
    await publish(store, conn, RECORD)
    assert await record_weights(conn) == UNRESOLVED
    await publish(store, conn, SQUAT_BARBELL)
    assert await record_weights(conn) == UNRESOLVED  # the push-ups are still unresolved
    await publish(store, conn, PUSH_UP_BODYWEIGHT)
    assert await record_weights(conn) == RESOLVED_BODYWEIGHT


async def test_replacement_with_other_equipment_rereads_the_sets(
    db_dsn: str, store: Store, conn: asyncpg.Connection[Any]
) -> None:
    await publish(store, conn, PUSH_UP_BODYWEIGHT, SQUAT_BARBELL, RECORD)
    assert await record_weights(conn) == RESOLVED_BODYWEIGHT
    await publish(store, conn, PUSH_UP_WEIGHTED)
    weighted = await record_weights(conn)
    assert weighted[:3] == [("push-up", "", None), ("push-up", "", None), ("push-up", "0", 0.0)]
    await reindex(db_dsn, batch_size=2)
    assert await record_weights(conn) == weighted
    # Deleting the weighted version leaves the address empty: unresolved again.
    await publish(store, conn, COACH.sign(5, "", [["e", PUSH_UP_WEIGHTED["id"]]], created_at=300))
    assert await record_weights(conn) == UNRESOLVED
    # A newer bodyweight version brings the zeros back.
    await publish(store, conn, exercise("push-up", "bodyweight", 400))
    assert await record_weights(conn) == RESOLVED_BODYWEIGHT


@pytest.mark.parametrize("exercise_first", [True, False])
async def test_template_blank_weights_stay_fill_in(
    store: Store, conn: asyncpg.Connection[Any], exercise_first: bool
) -> None:
    order = [PUSH_UP_BODYWEIGHT, TEMPLATE] if exercise_first else [TEMPLATE, PUSH_UP_BODYWEIGHT]
    await publish(store, conn, *order)
    assert await template_weights(conn) == [("", None, True), ("0", 0.0, True)]
    await publish(store, conn, PUSH_UP_WEIGHTED)
    assert await template_weights(conn) == [("", None, True), ("0", 0.0, True)]
