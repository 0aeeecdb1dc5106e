"""The muscle vocabulary (migration 0007): canonical muscle groups, the editable map from
hashtags, title words and equipment to muscles, and the views built on it, against real
PostgreSQL with events indexed the usual way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from indexer.follower import Indexer, reindex
from relay.nostr.event import decode_event
from relay.storage.postgres import Store, create_pool
from tests.indexer.scenario import strength_exercise
from tests.signer import Keys

Event = dict[str, Any]

COACH = Keys(401)
ATHLETE = Keys(402)
MONDAY = 1_736_121_600  # 2025-01-06 00:00 UTC

CANONICAL = {
    "chest", "front_delts", "side_delts", "rear_delts", "triceps", "biceps", "forearms",
    "lats", "upper_back", "traps", "quads", "hamstrings", "glutes", "calves", "abs",
    "obliques", "lower_back", "hip_flexors", "adductors", "abductors",
}  # fmt: skip


def exercise(d: str, title: str, equipment: str, *hashtags: str) -> Event:
    return strength_exercise(COACH, d, title=title, equipment=equipment, hashtags=hashtags)


EXERCISES = [
    exercise("bench", "Barbell Bench Press", "barbell", "Chest", "push"),
    exercise("push-up", "Push-ups", "bodyweight"),
    exercise("leg-curl", "Seated Leg Curl", "machine"),
    exercise("hang", "Dead hang", "pullup_bar"),
    exercise("getup", "Turkish Get-up", "kettlebell", "fullbody"),
]


def coord(d: str) -> str:
    return f"33401:{COACH.pubkey}:{d}"


def record(n: int, *sets: tuple[str, str, str, str]) -> Event:
    start = MONDAY + n * 3600
    return ATHLETE.sign(
        1301,
        "",
        [
            ["d", f"w{n}"],
            ["title", "Lift"],
            ["type", "strength"],
            ["start", str(start)],
            ["end", str(start + 1800)],
            ["completed", "true"],
            *(["exercise", coord(d), "", w, r, "8", t] for d, w, r, t in sets),
        ],
        created_at=start + 1800,
    )


RECORDS = [
    record(1, ("bench", "60", "5", "warmup"), ("bench", "100", "5", "normal")),
    record(2, ("bench", "100", "5", "normal"), ("push-up", "", "20", "normal")),
    record(3, ("bench", "100", "5", "failure"), ("getup", "16", "3", "normal")),
]


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    pool = await create_pool(db_dsn)
    try:
        store = Store(pool, default_limit=100)
        for event in [*EXERCISES, *RECORDS]:
            raw = msgspec.json.encode(event)
            await store.ingest([decode_event(raw)], [raw.decode()])
    finally:
        await pool.close()
    c = await asyncpg.connect(db_dsn)
    try:
        await Indexer("", batch_size=10).catch_up(c)
        yield c
    finally:
        await c.close()


async def muscles_of(conn: asyncpg.Connection[Any], d: str) -> dict[str, tuple[float, list[str]]]:
    rows = await conn.fetch(
        "SELECT muscle, contribution, matched_by FROM fitness.exercise_muscles WHERE d = $1", d
    )
    return {r["muscle"]: (float(r["contribution"]), r["matched_by"]) for r in rows}


async def load(conn: asyncpg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT muscle, exercises, workouts, sets, primary_sets, weighted_sets,"
        " weighted_volume_kg FROM fitness.weekly_load_by_muscle_group"
        " WHERE pubkey = $1 AND week = '2025-01-06'",
        ATHLETE.pubkey,
    )
    return {r["muscle"]: tuple(r.values())[1:] for r in rows}


async def test_canonical_muscles_each_a_hashtag_of_itself(db: asyncpg.Connection[Any]) -> None:
    rows = await db.fetch("SELECT muscle, region FROM fitness.muscle_groups")
    assert {r["muscle"] for r in rows} == CANONICAL
    selves = await db.fetch(
        "SELECT keyword, muscle, contribution FROM fitness.muscle_map"
        " WHERE source = 'hashtag' AND keyword = muscle"
    )
    assert {r["muscle"] for r in selves} == CANONICAL
    assert {float(r["contribution"]) for r in selves} == {1.0}
    # Every shipped row names a canonical muscle with a primary or secondary contribution.
    contributions = await db.fetch("SELECT DISTINCT contribution FROM fitness.muscle_map")
    assert {float(r["contribution"]) for r in contributions} == {0.5, 1.0}


async def test_exercises_map_by_hashtag_title_and_equipment(conn: asyncpg.Connection[Any]) -> None:
    assert await muscles_of(conn, "bench") == {
        "chest": (1.0, ["hashtag:chest", "title:bench press"]),
        "triceps": (0.5, ["title:bench press"]),
        "front_delts": (0.5, ["title:bench press"]),
    }
    push_up = await muscles_of(conn, "push-up")  # "Push-ups": words, and a plural
    assert {m: c for m, (c, _) in push_up.items()} == {
        "chest": 1.0,
        "triceps": 0.5,
        "front_delts": 0.5,
    }
    assert set(await muscles_of(conn, "leg-curl")) == {"hamstrings"}  # not biceps
    assert await muscles_of(conn, "hang") == {
        "lats": (1.0, ["equipment:pullup_bar"]),
        "biceps": (0.5, ["equipment:pullup_bar"]),
    }
    assert await muscles_of(conn, "getup") == {}


async def test_weekly_load_weights_sets_and_volume(conn: asyncpg.Connection[Any]) -> None:
    load_by_muscle = await load(conn)
    # Bench: 3 working sets of 100 x 5 (the warmup left out); push-ups: 1 set of 0 kg x 20.
    assert load_by_muscle["chest"] == (2, 3, 4, 4, 4.0, 1500.0)
    assert load_by_muscle["triceps"] == (2, 3, 4, 0, 2.0, 750.0)
    assert load_by_muscle["front_delts"] == (2, 3, 4, 0, 2.0, 750.0)
    assert set(load_by_muscle) == {"chest", "triceps", "front_delts"}


async def test_unmapped_exercises_until_an_operator_maps_them(
    db_dsn: str, conn: asyncpg.Connection[Any]
) -> None:
    rows = await conn.fetch("SELECT d, hashtags, performed_sets FROM fitness.unmapped_exercises")
    assert [tuple(r.values()) for r in rows] == [("getup", ["fullbody"], 1)]
    await conn.execute(
        "INSERT INTO fitness.muscle_map (source, keyword, muscle, contribution) VALUES"
        " ('hashtag', 'fullbody', 'abs', 0.5), ('title', 'get up', 'glutes', 1.0)"
    )
    assert await conn.fetch("SELECT * FROM fitness.unmapped_exercises") == []
    assert await muscles_of(conn, "getup") == {
        "abs": (0.5, ["hashtag:fullbody"]),
        "glutes": (1.0, ["title:get up"]),
    }
    assert (await load(conn))["glutes"] == (1, 1, 1, 1, 1.0, 48.0)
    # The map is the operator's data: a rebuild of the fitness tables keeps it.
    await reindex(db_dsn, batch_size=5)
    assert await muscles_of(conn, "getup") != {}


@pytest.mark.parametrize(
    "row",
    [
        ("hashtag", "Chest", "chest", 1.0),  # not lowercased
        ("title", "push-up", "chest", 1.0),  # titles are matched as words
        ("hashtag", "chest", "chest", 1.5),  # contribution above 1
        ("hashtag", "chest", "chest", 0),
        ("muscle", "chest", "chest", 1.0),  # unknown source
    ],
)
async def test_map_rows_are_checked(db: asyncpg.Connection[Any], row: tuple[Any, ...]) -> None:
    await db.execute("DELETE FROM fitness.muscle_map WHERE keyword = 'chest'")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO fitness.muscle_map VALUES ($1, $2, $3, $4)", *row)


async def test_map_rows_name_canonical_muscles(db: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("INSERT INTO fitness.muscle_map VALUES ('hashtag', 'pecs', 'pecs', 1)")
    # Renaming a muscle group carries its map rows along.
    chest = await db.fetchval("SELECT count(*) FROM fitness.muscle_map WHERE muscle = 'chest'")
    await db.execute("UPDATE fitness.muscle_groups SET muscle = 'pectorals' WHERE muscle = 'chest'")
    renamed = "SELECT count(*) FROM fitness.muscle_map WHERE muscle = 'pectorals'"
    assert chest > 1 and await db.fetchval(renamed) == chest
