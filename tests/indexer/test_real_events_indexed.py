"""The real signed fitness events of the shared fixtures, through the relay's store and the
indexer, into the tables."""

from __future__ import annotations

from typing import Any

import asyncpg

from indexer.follower import Indexer
from relay.nostr.errors import NostrError
from relay.nostr.event import decode_event
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.fixtures import valid_lines


def _decodes(line: str) -> bool:
    try:
        decode_event(line)
    except NostrError:
        return False
    return True


POWR_PUBKEY = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"


async def test_fixture_fitness_events_become_rows(db_dsn: str, db: asyncpg.Connection[Any]) -> None:
    pool = await create_pool(db_dsn)
    try:
        store = Store(pool, default_limit=100)
        # Every fixture the relay accepts (a few carry non-string tag elements and are
        # refused before storage); non-fitness events must leave the tables alone.
        lines = [line for line in valid_lines() if _decodes(line)]
        assert len(lines) > 90
        statuses = await store.ingest([decode_event(line) for line in lines], lines)
        assert set(statuses) == {IngestStatus.STORED}
    finally:
        await pool.close()
    await Indexer(db_dsn).catch_up(db)

    exercise = await db.fetchrow("SELECT * FROM fitness.exercises")
    assert exercise["event_id"].startswith("8b79bfa9")
    assert (exercise["pubkey"], exercise["d"], exercise["title"]) == (
        POWR_PUBKEY,
        "exercise-1742703804",
        "Test 2",
    )
    assert (exercise["format"], exercise["format_units"]) == (["weight", "reps"], ["kg", "count"])
    assert (exercise["exercise_type"], exercise["category"]) == ("strength", "Legs")
    assert exercise["hashtags"] == ["test", "powr"]

    workouts = await db.fetch(
        "SELECT event_id, dialect, title, completed, template_ref, template_pubkey,"
        " extract(epoch FROM ended_at - started_at) AS seconds FROM fitness.workouts"
        " ORDER BY event_id"
    )
    assert [(w["event_id"][:8], w["dialect"], w["title"], w["seconds"]) for w in workouts] == [
        ("11d8b6c0", "nip101e", "Test Circuit Workout", 1800),
        ("6be36ad8", "nip101e", "Simple Strength Workout", 8),
        ("8a305a82", "nip101e", "Simple Strength Workout", 19),
    ]
    # POWR's template coordinate has an empty pubkey: kept raw, never resolvable.
    assert workouts[1]["template_ref"] == "33402::local:m8l4p7sp-t3z81ndyajf"
    assert workouts[1]["template_pubkey"] is None

    sets = await db.fetch(
        "SELECT exercise_ref, exercise_pubkey, exercise_event_id, weight_kg, reps, rpe, set_type,"
        " mapped_by FROM fitness.workout_sets WHERE workout_event_id LIKE '6be36ad8%'"
        " ORDER BY position"
    )
    # No rpe in POWR-RN tags: set_type sits where rpe would be, found by its keyword.
    assert [tuple(s.values()) for s in sets] == [
        ("33401:local:m8l4pktv-bbjg6yus28d", None, None, 0.0, 8.0, None, "normal", "keywords"),
        ("33401:local:m8l4pktv-iwdfkt232bi", None, None, 0.0, 8.0, None, "normal", "keywords"),
        ("33401:local:m8l4pktv-4bod5iu9i58", None, None, 0.0, 8.0, None, "normal", "keywords"),
    ]
    web = await db.fetch(
        "SELECT exercise_ref, reps, rpe, set_type FROM fitness.workout_sets"
        " WHERE workout_event_id LIKE '11d8b6c0%' ORDER BY position"
    )
    assert [(s["exercise_ref"].split(":")[-1], s["reps"], s["rpe"]) for s in web] == [
        ("pushups", 10.0, 7.0),
        ("pushups", 8.0, 8.0),
        ("squats", 15.0, 6.0),
        ("squats", 12.0, 7.0),
    ]
    # Nothing else in the fixtures is a fitness row; malformed coordinates are unresolved.
    assert await db.fetchval("SELECT count(*) FROM fitness.non_workouts") == 0
    assert await db.fetchval("SELECT count(*) FROM fitness.unresolved_references") == 12
    assert await db.fetchval("SELECT count(*) FROM fitness.missing_references") == 0
