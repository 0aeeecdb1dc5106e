"""Every view of schema fitness gives the same bytes on databases loaded with the same events
in different orders.

The corpus mixes float values whose double precision sum depends on the order they are
added in (0.1, 0.2, 0.3; 1e16 beside 1; pounds and miles converted with inexact factors),
spread over many records of one athlete and week, so a view that summed in row order would
differ between the databases. Views are compared through the export-table CSV output (every
digit of every float), rows sorted.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from indexer.export import export_table
from indexer.follower import Indexer
from relay.nostr.event import decode_event
from relay.storage.postgres import Store, create_pool
from tests.conftest import cloned_database
from tests.indexer.scenario import EVENTS, strength_exercise
from tests.signer import Keys

Event = dict[str, Any]

COACH = Keys(301)
ATHLETES = (Keys(302), Keys(303))
WEEK_START = 1_736_121_600  # Monday 2025-01-06 00:00 UTC

# Values whose float sums depend on the order of addition.
WEIGHTS = ("0.1", "0.2", "0.3", "1e16", "1", "1", "7.77", "0.7", "1e-3", "123.456", "", "0")
REPS = ("1", "3", "0.1", "0.2", "0.3", "5", "1e16", "2")
DISTANCES = (("0.1", "km"), ("0.2", "km"), ("0.3", "mi"), ("1e13", "km"), ("1.37", "mi"))


def _exercise(d: str, equipment: str, unit: str, tags: Sequence[str]) -> Event:
    return strength_exercise(COACH, d, equipment=equipment, weight_unit=unit, hashtags=tags)


EXERCISES = {
    "squat": _exercise("squat", "barbell", "kg", ["legs", "quads"]),
    "press": _exercise("press", "dumbbell", "lbs", ["shoulders", "push"]),
    "push-up": _exercise("push-up", "bodyweight", "kg", ["chest", "push"]),
}


def _coord(d: str) -> str:
    return f"33401:{COACH.pubkey}:{d}"


def corpus() -> list[Event]:
    rng = random.Random(7447)
    events = list(EXERCISES.values())
    events.append(
        COACH.sign(
            33402,
            "",
            [
                ["d", "mix"],
                ["title", "Mix"],
                ["type", "strength"],
                *(["exercise", _coord(d), "", "", "5", "8", "normal"] for d in EXERCISES),
            ],
            created_at=100,
        )
    )
    for a, athlete in enumerate(ATHLETES):
        for n in range(40):
            start = WEEK_START + n * 3600 + a
            sets = [
                [
                    "exercise",
                    _coord(rng.choice(list(EXERCISES))),
                    "",
                    rng.choice(WEIGHTS),
                    rng.choice(REPS),
                    "8",
                    rng.choice(("normal", "normal", "failure", "warmup")),
                ]
                for _ in range(rng.randint(1, 4))
            ]
            events.append(
                athlete.sign(
                    1301,
                    "",
                    [
                        ["d", f"w{n}"],
                        ["title", "Lift"],
                        ["type", "strength"],
                        ["start", str(start)],
                        ["end", str(start + 1800)],
                        ["completed", "true"],
                        ["template", f"33402:{COACH.pubkey}:mix", ""],
                        *sets,
                    ],
                    created_at=start + 1800,
                )
            )
            distance, unit = rng.choice(DISTANCES)
            events.append(
                athlete.sign(
                    1301,
                    "",
                    [
                        ["d", f"run{n}"],
                        ["title", "Run"],
                        ["exercise", "running"],
                        ["distance", distance, unit],
                        ["duration", "00:30:00"],
                        ["calories", rng.choice(("0.1", "0.2", "0.3", "1e16", "1"))],
                        ["steps", rng.choice(("0.1", "0.7", "1e16", "3"))],
                        ["elevation_gain", rng.choice(("0.1", "0.2", "12.3")), "ft"],
                        ["workout_start_time", str(start + 900)],
                        ["source", "gps"],
                    ],
                    created_at=start + 2700,
                )
            )
    return [*events, *EVENTS.values()]


CORPUS = corpus()


def orders() -> list[list[Event]]:
    shuffled = list(CORPUS)
    random.Random(1301).shuffle(shuffled)
    return [list(CORPUS), list(reversed(CORPUS)), shuffled]


async def load(dsn: str, events: Sequence[Event]) -> None:
    """Store the events one by one in this order, then index them."""
    pool = await create_pool(dsn)
    try:
        store = Store(pool, default_limit=100)
        for event in events:
            raw = msgspec.json.encode(event)
            await store.ingest([decode_event(raw)], [raw.decode()])
        async with pool.acquire() as conn:
            await Indexer("", batch_size=50).catch_up(conn)
    finally:
        await pool.close()


async def views(conn: asyncpg.Connection[Any]) -> list[str]:
    rows = await conn.fetch(
        "SELECT viewname FROM pg_views WHERE schemaname = 'fitness' ORDER BY viewname"
    )
    return [r["viewname"] for r in rows]


async def exported(dsn: str, view: str) -> tuple[list[str], list[list[str]]]:
    """The view's CSV header and its rows, sorted."""
    out = io.BytesIO()
    await export_table(dsn, f"fitness.{view}", "csv", out)
    header, *rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    return header, sorted(rows)


async def plain_sums(conn: asyncpg.Connection[Any]) -> list[tuple[Any, ...]]:
    """What the weekly volume was before: float sums in row order."""
    rows = await conn.fetch(
        "SELECT pubkey, exercise_d, sum(set_volume_kg)::text AS v, sum(reps)::text AS r"
        " FROM fitness.strength_sets WHERE NOT is_warmup GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [tuple(r.values()) for r in rows]


async def test_every_view_is_the_same_whatever_the_arrival_order(
    server_dsn: str, template_db: str
) -> None:
    dumps: list[dict[str, tuple[list[str], list[list[str]]]]] = []
    plain: list[list[tuple[Any, ...]]] = []
    for events in orders():
        async with cloned_database(server_dsn, template_db) as dsn:
            await load(dsn, events)
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SET extra_float_digits = 3")
                plain.append(await plain_sums(conn))
                names = await views(conn)
            finally:
                await conn.close()
            dumps.append({name: await exported(dsn, name) for name in names})
    first = dumps[0]
    assert {"weekly_volume_by_exercise", "weekly_volume_by_muscle", "cardio_totals"} <= set(first)
    assert len(first["weekly_volume_by_exercise"][1]) >= len(ATHLETES) * len(EXERCISES)
    assert len(first["cardio_totals"][1]) == len(ATHLETES) + 1  # and the scenario's run
    # The canonical exercise views (0009) see the corpus: "press" is an overhead press,
    # "push-up" a push up, "squat" a squat, each in every athlete's weekly progression.
    canonical = {"exercise_canonical", "canonical_sets", "weekly_progression"}
    assert canonical | {"weekly_training_frequency", "unmatched_exercises"} <= set(first)
    assert len(first["weekly_progression"][1]) >= len(ATHLETES) * len(EXERCISES)
    # The corpus does make row order matter: plain float sums differ between the databases.
    assert len({tuple(p) for p in plain}) > 1
    for other in dumps[1:]:
        assert other.keys() == first.keys()
        for name in first:
            assert other[name] == first[name], name
