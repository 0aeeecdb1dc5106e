"""The research views and the fetcher's queue (migration 0003), on rows written directly.

One small world is inserted into the fitness tables with SQL, bypassing the indexer, so
each view's output can be stated exactly: which sets count, what they add up to, and how
unresolved and malformed references are grouped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

A = "a" * 64  # an athlete
B = "b" * 64  # another athlete
X = "e" * 64  # the author of the exercises and templates

SQUAT = f"33401:{X}:squat"
BENCH = f"33401:{X}:bench"
DEADLIFT = f"33401:{X}:deadlift"  # never indexed
OHP = f"33401:{X}:ohp"  # never indexed
MALFORMED = "33401:local:abc"  # pubkey slot is not a pubkey: cannot be fetched
PUSH = f"33402:{A}:push"
LEGS = f"33402:{A}:legs"
GONE = f"33402:{X}:gone"  # never indexed
MALFORMED_TEMPLATE = "33402::local:x"


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def hexid(n: int) -> str:
    return f"{n:064x}"


W1, W2, W3, W4 = hexid(1), hexid(2), hexid(3), hexid(4)  # strength records
R1, R2, R3, R4 = hexid(11), hexid(12), hexid(13), hexid(14)  # cardio records
E_SQUAT, E_BENCH, T_PUSH, T_LEGS = hexid(101), hexid(102), hexid(201), hexid(202)

W1_AT = utc(2024, 1, 10, 10)  # a Wednesday: week of Monday 2024-01-08
W2_CREATED = utc(2024, 1, 14, 23, 30)  # Sunday night, no start: same week
W3_AT = utc(2024, 1, 15, 8)  # the next Monday
W4_AT = utc(2024, 1, 11, 7)

DEFAULTS: dict[str, dict[str, Any]] = {
    "exercises": {
        "format": ["weight", "reps", "rpe", "set_type"],
        "format_units": ["kg", "count", "0-10", "enum"],
        "format_units_raw": ["kg", "count", "0-10", "enum"],
        "instructions": "",
        "hashtags": [],
    },
    "templates": {"notes": "", "hashtags": []},
    "template_sets": {
        "set_number": 1,
        "set_number_given": False,
        "group_number": 1,
        "values_raw": [],
        "mapped_by": "default",
    },
    "workouts": {"kind": 1301, "dialect": "nip101e", "notes": "", "hashtags": []},
    "workout_sets": {
        "set_number": 1,
        "set_number_given": False,
        "values_raw": [],
        "mapped_by": "default",
    },
    "exercise_hashtags": {},
}


async def insert(conn: asyncpg.Connection[Any], table: str, **values: Any) -> None:
    row = {**DEFAULTS[table], **values}
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await conn.execute(f"INSERT INTO fitness.{table} ({columns}) VALUES ({params})", *row.values())


async def workout_set(
    conn: asyncpg.Connection[Any],
    workout: str,
    position: int,
    ref: str,
    weight: float | None,
    reps: float | None,
    set_type: str | None = "normal",
    relay: str | None = None,
) -> None:
    """A performed set; the coordinate is parsed and resolved the way the indexer would."""
    parts = ref.split(":", 2)
    parsed = len(parts) == 3 and len(parts[1]) == 64
    resolved = {SQUAT: E_SQUAT, BENCH: E_BENCH}.get(ref)
    await insert(
        conn,
        "workout_sets",
        workout_event_id=workout,
        position=position,
        tag_index=position + 3,
        exercise_ref=ref,
        exercise_pubkey=parts[1] if parsed else None,
        exercise_d=parts[2] if parsed else None,
        relay_hint=relay,
        exercise_event_id=resolved,
        weight_kg=weight,
        reps=reps,
        set_type=set_type,
    )


async def template_set(
    conn: asyncpg.Connection[Any], d: str, position: int, ref: str, relay: str | None = None
) -> None:
    parts = ref.split(":", 2)
    parsed = len(parts) == 3 and len(parts[1]) == 64
    await insert(
        conn,
        "template_sets",
        template_pubkey=A,
        template_d=d,
        position=position,
        tag_index=position + 3,
        exercise_ref=ref,
        exercise_pubkey=parts[1] if parsed else None,
        exercise_d=parts[2] if parsed else None,
        relay_hint=relay,
        exercise_event_id={SQUAT: E_SQUAT, BENCH: E_BENCH}.get(ref),
    )


async def workout(
    conn: asyncpg.Connection[Any],
    event_id: str,
    pubkey: str,
    created_at: dt.datetime,
    template: str | None = None,
    template_relay: str | None = None,
    **values: Any,
) -> None:
    template_columns: dict[str, Any] = {}
    if template is not None:
        parts = template.split(":", 2)
        parsed = len(parts) == 3 and len(parts[1]) == 64
        template_columns = {
            "template_ref": template,
            "template_pubkey": parts[1] if parsed else None,
            "template_d": parts[2] if parsed else None,
            "template_relay": template_relay,
            "template_event_id": {PUSH: T_PUSH, LEGS: T_LEGS}.get(template),
        }
    await insert(
        conn,
        "workouts",
        event_id=event_id,
        pubkey=pubkey,
        created_at=created_at,
        **template_columns,
        **values,
    )


async def build_world(conn: asyncpg.Connection[Any]) -> None:
    day = utc(2024, 1, 1)
    await insert(
        conn, "exercises", pubkey=X, d="squat", event_id=E_SQUAT, created_at=day, title="Squat"
    )
    await insert(
        conn,
        "exercises",
        pubkey=X,
        d="bench",
        event_id=E_BENCH,
        created_at=day,
        title="Bench Press",
    )
    # "Legs" and "legs" normalise to the same tag: the set must count once under it.
    for d, tag, raw in [
        ("squat", "legs", "legs"),
        ("squat", "legs", "Legs"),
        ("squat", "compound", "compound"),
        ("bench", "chest", "chest"),
    ]:
        await insert(conn, "exercise_hashtags", pubkey=X, d=d, tag=tag, raw=raw)

    await insert(
        conn, "templates", pubkey=A, d="push", event_id=T_PUSH, created_at=day, title="Push Day"
    )
    await insert(
        conn, "templates", pubkey=A, d="legs", event_id=T_LEGS, created_at=day, title="Leg Day"
    )
    await template_set(conn, "push", 0, BENCH, "wss://x")
    await template_set(conn, "push", 1, DEADLIFT, "wss://b")
    await template_set(conn, "push", 2, DEADLIFT, "")
    await template_set(conn, "push", 3, OHP, "wss://a")
    await template_set(conn, "push", 4, MALFORMED)
    await template_set(conn, "legs", 0, SQUAT)

    await workout(conn, W1, A, W1_AT + dt.timedelta(hours=1), PUSH, started_at=W1_AT)
    await workout_set(conn, W1, 0, SQUAT, 130, 10, "warmup")  # counts nowhere
    await workout_set(conn, W1, 1, SQUAT, 100, 5)
    await workout_set(conn, W1, 2, SQUAT, 100, 3, "failure")
    await workout_set(conn, W1, 3, SQUAT, 200, 0)  # a failed attempt: no weight record
    await workout_set(conn, W1, 4, BENCH, 80, 8)

    await workout(conn, W2, A, W2_CREATED, GONE, "wss://t")
    await workout_set(conn, W2, 0, SQUAT, 120, 3, "drop")
    await workout_set(conn, W2, 1, DEADLIFT, 140, 2, relay="wss://a")
    await workout_set(conn, W2, 2, MALFORMED, 60, 10)

    await workout(conn, W3, A, W3_AT, MALFORMED_TEMPLATE, started_at=W3_AT)
    await workout_set(conn, W3, 0, SQUAT, 100, 5, None)  # unknown set_type counts
    await workout_set(conn, W3, 1, BENCH, None, 10)  # bodyweight: reps, no volume
    await workout_set(conn, W3, 2, BENCH, -20, 5)  # assisted: no volume, no 1RM

    await workout(conn, W4, B, W4_AT, PUSH, started_at=W4_AT)
    await workout_set(conn, W4, 0, SQUAT, 50, 10)

    runstr = {"dialect": "runstr"}
    await workout(
        conn,
        R1,
        A,
        utc(2024, 1, 12, 9),
        **runstr,
        activity="running",
        started_at=utc(2024, 1, 12, 8),
        distance_m=5000.0,
        duration_s=1695.0,
        calories=285.0,
        elevation_gain_m=45.0,
    )
    await workout(
        conn,
        R2,
        A,
        utc(2024, 1, 20, 9),
        **runstr,
        activity="running",
        distance_m=10000.0,
        duration_s=3600.0,
    )
    await workout(conn, R3, A, utc(2024, 1, 21, 9), **runstr, activity="yoga", duration_s=1800.0)
    # A NIP-101e record with a distance counts as cardio too.
    await workout(
        conn,
        R4,
        B,
        utc(2024, 1, 22, 9),
        activity="running",
        distance_m=3000.0,
        duration_s=900.0,
        calories=200.0,
        steps=4000.0,
    )


def epley(weight: float, reps: float) -> float:
    return weight * (1 + reps / 30)


WEEK1 = dt.date(2024, 1, 8)
WEEK2 = dt.date(2024, 1, 15)


async def rows_of(conn: asyncpg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in await conn.fetch(query)]


async def test_weekly_volume_by_exercise(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = await rows_of(
        db,
        "SELECT pubkey, week, exercise_pubkey, exercise_d, exercise_ref, title, workouts, sets,"
        " reps, volume_kg FROM fitness.weekly_volume_by_exercise"
        ' ORDER BY pubkey, week, exercise_ref COLLATE "C"',
    )
    assert rows == [
        (A, WEEK1, X, "bench", BENCH, "Bench Press", 1, 1, 8, 640),
        (A, WEEK1, X, "deadlift", DEADLIFT, None, 1, 1, 2, 280),
        # The warmup (130 x 10) is left out; the failed attempt (200 x 0) is a set with no
        # volume; failure and drop sets count.
        (A, WEEK1, X, "squat", SQUAT, "Squat", 2, 4, 11, 100 * 5 + 100 * 3 + 120 * 3),
        (A, WEEK1, None, None, MALFORMED, None, 1, 1, 10, 600),
        # Bodyweight (no weight) and assisted (negative weight) sets add reps, not volume.
        (A, WEEK2, X, "bench", BENCH, "Bench Press", 1, 2, 15, None),
        (A, WEEK2, X, "squat", SQUAT, "Squat", 1, 1, 5, 500),
        (B, WEEK1, X, "squat", SQUAT, "Squat", 1, 1, 10, 500),
    ]


async def test_weekly_volume_by_muscle(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = await rows_of(
        db,
        "SELECT pubkey, week, hashtag, exercises, workouts, sets, reps, volume_kg"
        ' FROM fitness.weekly_volume_by_muscle ORDER BY pubkey, week, hashtag COLLATE "C"',
    )
    # Unresolved exercises have no hashtags: the deadlift and malformed sets are absent.
    # "Legs" and "legs" are one tag: the squat's sets count once under it.
    assert rows == [
        (A, WEEK1, "chest", 1, 1, 1, 8, 640),
        (A, WEEK1, "compound", 1, 2, 4, 11, 1160),
        (A, WEEK1, "legs", 1, 2, 4, 11, 1160),
        (A, WEEK2, "chest", 1, 1, 2, 15, None),
        (A, WEEK2, "compound", 1, 1, 1, 5, 500),
        (A, WEEK2, "legs", 1, 1, 1, 5, 500),
        (B, WEEK1, "compound", 1, 1, 1, 10, 500),
        (B, WEEK1, "legs", 1, 1, 1, 10, 500),
    ]


async def test_week_is_the_utc_monday_whatever_the_session_time_zone(
    db: asyncpg.Connection[Any],
) -> None:
    await build_world(db)
    await db.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14: W2 would be Monday
    weeks = await db.fetch(
        "SELECT DISTINCT week FROM fitness.weekly_volume_by_exercise WHERE pubkey = $1"
        " ORDER BY week",
        A,
    )
    assert [r["week"] for r in weeks] == [WEEK1, WEEK2]


async def test_personal_records(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = {
        (r["pubkey"], r["exercise_ref"]): dict(r)
        for r in await db.fetch("SELECT * FROM fitness.personal_records")
    }
    assert set(rows) == {(A, SQUAT), (A, BENCH), (A, DEADLIFT), (A, MALFORMED), (B, SQUAT)}

    squat = rows[(A, SQUAT)]
    assert squat == {
        "pubkey": A,
        "exercise_pubkey": X,
        "exercise_d": "squat",
        "exercise_ref": SQUAT,
        "title": "Squat",
        "workouts": 3,
        "sets": 5,
        # Not the warmup's 130 kg x 10, nor the 200 kg attempt with 0 reps.
        "max_weight_kg": 120.0,
        "max_reps": 5.0,
        "max_set_volume_kg": 500.0,
        "e1rm_epley_kg": epley(120, 3),
        "e1rm_weight_kg": 120.0,
        "e1rm_reps": 3.0,
        "e1rm_workout_event_id": W2,
        "e1rm_performed_at": W2_CREATED,
        "first_performed_at": W1_AT,
        "last_performed_at": W3_AT,
    }
    assert epley(120, 3) == 132.0

    bench = rows[(A, BENCH)]
    assert (bench["max_weight_kg"], bench["max_reps"], bench["max_set_volume_kg"]) == (80, 10, 640)
    assert bench["e1rm_epley_kg"] == epley(80, 8)
    assert (bench["e1rm_workout_event_id"], bench["e1rm_performed_at"]) == (W1, W1_AT)

    deadlift = rows[(A, DEADLIFT)]
    assert (deadlift["exercise_pubkey"], deadlift["exercise_d"], deadlift["title"]) == (
        X,
        "deadlift",
        None,
    )
    assert deadlift["e1rm_epley_kg"] == epley(140, 2)
    malformed = rows[(A, MALFORMED)]
    assert (malformed["exercise_pubkey"], malformed["exercise_d"]) == (None, None)
    assert malformed["e1rm_epley_kg"] == epley(60, 10) == 80.0
    assert rows[(B, SQUAT)]["e1rm_epley_kg"] == epley(50, 10)


async def test_personal_record_ties_go_to_the_earliest_set(db: asyncpg.Connection[Any]) -> None:
    await insert(
        db, "exercises", pubkey=X, d="squat", event_id=E_SQUAT, created_at=W1_AT, title="Squat"
    )
    await workout(db, W2, A, W3_AT)
    await workout_set(db, W2, 0, SQUAT, 100, 5)
    await workout(db, W1, A, W1_AT)
    await workout_set(db, W1, 0, SQUAT, 100, 5)
    row = await db.fetchrow("SELECT * FROM fitness.personal_records")
    assert row is not None
    assert (row["e1rm_workout_event_id"], row["e1rm_performed_at"]) == (W1, W1_AT)
    assert row["e1rm_epley_kg"] == epley(100, 5)


async def test_template_usage(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = await rows_of(
        db,
        "SELECT template_pubkey, template_d, template_ref, template_event_id, title, indexed,"
        " records, authors, first_used, last_used FROM fitness.template_usage"
        ' ORDER BY template_ref COLLATE "C"',
    )
    assert rows == [
        # Referenced through a malformed coordinate: keyed by the raw text.
        (None, None, MALFORMED_TEMPLATE, None, None, False, 1, 1, W3_AT, W3_AT),
        # Indexed and never used.
        (A, "legs", LEGS, T_LEGS, "Leg Day", True, 0, 0, None, None),
        (A, "push", PUSH, T_PUSH, "Push Day", True, 2, 2, W1_AT, W4_AT),
        # Referenced, never indexed.
        (X, "gone", GONE, None, None, False, 1, 1, W2_CREATED, W2_CREATED),
    ]


async def test_cardio_totals(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = await rows_of(
        db,
        "SELECT pubkey, activity, workouts, workouts_with_distance, total_distance_m,"
        " total_duration_s, total_calories, total_elevation_gain_m, total_steps, first_at,"
        ' last_at FROM fitness.cardio_totals ORDER BY pubkey, activity COLLATE "C"',
    )
    first_run, second_run, yoga = utc(2024, 1, 12, 8), utc(2024, 1, 20, 9), utc(2024, 1, 21, 9)
    # The strength records (no distance, NIP-101e) are not cardio; R4 is, by its distance.
    assert rows == [
        (A, "running", 2, 2, 15000, 5295, 285, 45, None, first_run, second_run),
        (A, "yoga", 1, 0, None, 1800, None, None, None, yoga, yoga),
        (B, "running", 1, 1, 3000, 900, 200, None, 4000, utc(2024, 1, 22, 9), utc(2024, 1, 22, 9)),
    ]


async def test_missing_references_group_addresses_and_hints(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = await rows_of(
        db,
        "SELECT kind, pubkey, d, address, relay_hints, referenced_by, referencing_objects"
        ' FROM fitness.missing_references ORDER BY address COLLATE "C"',
    )
    assert rows == [
        # Two template sets (hints wss://b and "") and one performed set (hint wss://a).
        (33401, X, "deadlift", DEADLIFT, ["wss://a", "wss://b"], 3, 2),
        (33401, X, "ohp", OHP, ["wss://a"], 1, 1),
        (33402, X, "gone", GONE, ["wss://t"], 1, 1),
    ]
    # The malformed references are unresolved too, but cannot be fetched.
    unresolved = await db.fetch("SELECT raw FROM fitness.unresolved_references")
    assert {MALFORMED, MALFORMED_TEMPLATE} <= {r["raw"] for r in unresolved}


async def test_missing_references_disappear_once_indexed(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    # What the indexer does when the deadlift arrives: index it and link its sets.
    await insert(
        db,
        "exercises",
        pubkey=X,
        d="deadlift",
        event_id=hexid(103),
        created_at=W1_AT,
        title="Deadlift",
    )
    for table in ("workout_sets", "template_sets"):
        await db.execute(
            f"UPDATE fitness.{table} SET exercise_event_id = $1"
            " WHERE exercise_pubkey = $2 AND exercise_d = 'deadlift'",
            hexid(103),
            X,
        )
    addresses = await db.fetch(
        'SELECT address FROM fitness.missing_references ORDER BY address COLLATE "C"'
    )
    assert [r["address"] for r in addresses] == [OHP, GONE]
    volume = await db.fetchrow(
        "SELECT title, volume_kg FROM fitness.weekly_volume_by_exercise"
        " WHERE exercise_d = 'deadlift'"
    )
    assert volume is not None and (volume["title"], volume["volume_kg"]) == ("Deadlift", 280)


async def test_incomplete_templates(db: asyncpg.Connection[Any]) -> None:
    await build_world(db)
    rows = [dict(r) for r in await db.fetch("SELECT * FROM fitness.incomplete_templates")]
    assert len(rows) == 1  # the leg template's only exercise is indexed
    row = rows[0]
    missing = row.pop("missing_addresses")
    assert sorted(missing) == sorted([DEADLIFT, OHP, MALFORMED]) and len(missing) == 3
    assert row == {
        "pubkey": A,
        "d": "push",
        "event_id": T_PUSH,
        "created_at": utc(2024, 1, 1),
        "title": "Push Day",
        "missing_count": 3,  # distinct references
        "missing_sets": 4,  # the deadlift is prescribed twice
        "total_sets": 5,
    }


async def test_views_are_empty_on_an_empty_database(db: asyncpg.Connection[Any]) -> None:
    for view in (
        "missing_references",
        "incomplete_templates",
        "strength_sets",
        "weekly_volume_by_exercise",
        "weekly_volume_by_muscle",
        "personal_records",
        "template_usage",
        "cardio_totals",
    ):
        assert await db.fetchval(f"SELECT count(*) FROM fitness.{view}") == 0, view
