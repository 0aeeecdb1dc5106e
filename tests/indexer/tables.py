"""Reading the fitness tables back whole, for comparisons."""

from __future__ import annotations

from typing import Any

from relay.storage.migrate import Conn

TABLES = (
    "exercises",
    "exercise_hashtags",
    "exercise_media",
    "templates",
    "template_sets",
    "workouts",
    "workout_sets",
    "workout_splits",
    "workout_prs",
    "non_workouts",
    "lists",
    "list_items",
    "index_errors",
)


async def snapshot(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every fitness table, in a stable order."""
    result = {}
    for table in TABLES:
        rows = await conn.fetch(f"SELECT * FROM fitness.{table}")
        result[table] = sorted((tuple(r.values()) for r in rows), key=repr)
    return result
