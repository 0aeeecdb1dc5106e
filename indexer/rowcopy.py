"""The rows of a set-based batch, as binary COPY writes them (see :mod:`indexer.bulk`).

Each function takes the surviving rows of one kind and copies them, and their child rows,
into the fitness tables in one COPY per table. The columns and values are those the
entry-by-entry path (:mod:`indexer.store`) inserts; times become ``timestamptz`` values
computed as PostgreSQL's ``to_timestamp(float8)`` computes them.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from indexer.model import Exercise, FitnessList, Template, Workout
from indexer.store import (
    LinkedExercise,
    address_of,
    read_set,
    resolve,
    set_columns,
    workout_values,
)
from relay.nostr.kinds import EXERCISE, WORKOUT_TEMPLATE
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = [
    "Unrepresentable",
    "copy_exercises",
    "copy_lists",
    "copy_rows",
    "copy_template_sets",
    "copy_templates",
    "copy_workouts",
    "read",
    "timestamp",
]

_Q = load_queries("indexer.sql")
Address2 = tuple[str, str]


def _split(keys: Sequence[Address2]) -> tuple[list[str], list[str]]:
    return [p for p, _ in keys], [d for _, d in keys]


_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_PG_EPOCH_UNIX = 946_684_800


class Unrepresentable(Exception):
    """A value the COPY path cannot carry (a time outside Python's datetime range)."""


def timestamp(seconds: float | None) -> dt.datetime | None:
    """``to_timestamp(seconds)`` as PostgreSQL computes it (rint of the microseconds since
    2000-01-01 in double precision), as a datetime."""
    if seconds is None:
        return None
    try:
        micros = round((float(seconds) - _PG_EPOCH_UNIX) * 1_000_000.0)
        return _PG_EPOCH + dt.timedelta(microseconds=micros)
    except (OverflowError, ValueError) as exc:
        raise Unrepresentable(f"to_timestamp({seconds!r})") from exc


async def copy_rows(conn: Conn, table: str, columns: Sequence[str], records: list[Any]) -> None:
    """COPY ``records`` (tuples in ``columns`` order) into ``fitness.<table>``."""
    if records:
        await conn.copy_records_to_table(
            table, schema_name="fitness", columns=list(columns), records=records
        )


_SET_VALUES = (
    "weight_kg",
    "weight_raw",
    "weight_unit",
    "reps",
    "rpe",
    "set_type",
    "set_type_raw",
    "duration_s",
    "distance_m",
    "heart_rate",
    "mapped_by",
)


@functools.lru_cache(maxsize=1 << 16)
def _reading(
    values_raw: tuple[str, ...],
    format: tuple[str, ...] | None,
    format_units: tuple[str | None, ...] | None,
    equipment: str | None,
    prescribed: bool,
) -> tuple[Any, ...]:
    linked = None if format is None else LinkedExercise("", format, format_units or (), equipment)
    return set_columns(read_set(values_raw, linked, prescribed=prescribed))


def read(
    values_raw: Sequence[str], linked: LinkedExercise | None, prescribed: bool = False
) -> tuple[Any, ...]:
    """A set's mapped values (the columns of :data:`_SET_VALUES`), through a cache: sets
    repeat a small vocabulary of values and formats, and the mapping is pure."""
    if linked is None:
        return _reading(tuple(values_raw), None, None, None, prescribed)
    return _reading(
        tuple(values_raw), linked.format, linked.format_units, linked.equipment, prescribed
    )


async def copy_exercises(conn: Conn, exercises: list[Exercise]) -> None:
    await copy_rows(
        conn,
        "exercises",
        (
            "pubkey",
            "d",
            "event_id",
            "created_at",
            "title",
            "equipment",
            "difficulty",
            "format",
            "format_units",
            "format_units_raw",
            "instructions",
            "exercise_type",
            "category",
            "hashtags",
        ),
        [
            (
                ex.pubkey,
                ex.d,
                ex.event_id,
                timestamp(ex.created_at),
                ex.title,
                ex.equipment,
                ex.difficulty,
                list(ex.format),
                list(ex.format_units),
                list(ex.format_units_raw),
                ex.instructions,
                ex.exercise_type,
                ex.category,
                [tag.tag for tag in ex.hashtags],
            )
            for ex in exercises
        ],
    )
    await copy_rows(
        conn,
        "exercise_hashtags",
        ("pubkey", "d", "tag", "raw"),
        [(ex.pubkey, ex.d, tag.tag, tag.raw) for ex in exercises for tag in ex.hashtags],
    )
    await copy_rows(
        conn,
        "exercise_media",
        ("pubkey", "d", "position", "url", "mime_type", "width", "height", "alt", "raw"),
        [
            (ex.pubkey, ex.d, i, m.url, m.mime_type, m.width, m.height, m.alt, m.raw)
            for ex in exercises
            for i, m in enumerate(ex.media)
        ],
    )


async def copy_templates(conn: Conn, templates: list[Template]) -> None:
    await copy_rows(
        conn,
        "templates",
        (
            "pubkey",
            "d",
            "event_id",
            "created_at",
            "title",
            "template_type",
            "rounds",
            "duration_s",
            "interval_s",
            "rest_between_rounds_s",
            "rest_between_sets_s",
            "difficulty",
            "notes",
            "client",
            "hashtags",
        ),
        [
            (
                t.pubkey,
                t.d,
                t.event_id,
                timestamp(t.created_at),
                t.title,
                t.template_type,
                t.rounds,
                t.duration_s,
                t.interval_s,
                t.rest_between_rounds_s,
                t.rest_between_sets_s,
                t.difficulty,
                t.notes,
                t.client,
                [tag.tag for tag in t.hashtags],
            )
            for t in templates
        ],
    )


_SET_REF = ("exercise_ref", "exercise_pubkey", "exercise_d", "relay_hint", "exercise_event_id")


async def copy_template_sets(
    conn: Conn, templates: list[Template], known: dict[Address2, LinkedExercise]
) -> None:
    rows = []
    for t in templates:
        for s in t.sets:
            pubkey, d, linked = resolve(s.exercise, known)
            rows.append(
                (
                    t.pubkey,
                    t.d,
                    s.position,
                    s.tag_index,
                    s.exercise.raw,
                    pubkey,
                    d,
                    s.exercise.relay,
                    linked.event_id if linked else None,
                    s.set_number,
                    s.set_number_given,
                    s.group_number,
                    list(s.values_raw),
                    *read(s.values_raw, linked, prescribed=True),
                )
            )
    await copy_rows(
        conn,
        "template_sets",
        (
            "template_pubkey",
            "template_d",
            "position",
            "tag_index",
            *_SET_REF,
            "set_number",
            "set_number_given",
            "group_number",
            "values_raw",
            *_SET_VALUES,
        ),
        rows,
    )


_WORKOUT_COLUMNS = (
    "event_id",
    "kind",
    "pubkey",
    "d",
    "created_at",
    "dialect",
    "title",
    "workout_type",
    "activity",
    "activity_raw",
    "started_at",
    "ended_at",
    "start_raw",
    "end_raw",
    "duration_s",
    "duration_raw",
    "completed",
    "rounds_completed",
    "interval_s",
    "template_ref",
    "template_pubkey",
    "template_d",
    "template_relay",
    "template_event_id",
    "notes",
    "client",
    "source",
    "hashtags",
    "distance_m",
    "distance_raw",
    "distance_unit",
    "elevation_gain_m",
    "elevation_loss_m",
    "calories",
    "steps",
    "avg_heart_rate",
    "max_heart_rate",
    "avg_pace_s_per_km",
    "avg_pace_raw",
    "avg_pace_unit",
)


async def copy_workouts(
    conn: Conn, workouts: list[Workout], known: dict[Address2, LinkedExercise]
) -> None:
    refs = {address_of(w.template, WORKOUT_TEMPLATE) for w in workouts if w.template is not None}
    wanted = [(p, d) for p, d in refs if p is not None and d is not None]
    templates: dict[Address2, str] = {}
    if wanted:
        pubkeys, ds = _split(wanted)
        for r in await conn.fetch(_Q["bulk_template_events"], pubkeys, ds):
            templates[(r["pubkey"], r["d"])] = r["event_id"]
    rows = []
    sets = []
    splits = []
    prs = []
    for w in workouts:
        template_pubkey, template_d = (None, None)
        if w.template is not None:
            template_pubkey, template_d = address_of(w.template, WORKOUT_TEMPLATE)
        template_event = None
        if template_pubkey is not None and template_d is not None:
            template_event = templates.get((template_pubkey, template_d))
        rows.append(workout_values(w, template_pubkey, template_d, template_event, timestamp))
        for s in w.sets:
            pubkey, d, linked = resolve(s.exercise, known)
            sets.append(
                (
                    w.event_id,
                    s.position,
                    s.tag_index,
                    s.exercise.raw,
                    pubkey,
                    d,
                    s.exercise.relay,
                    linked.event_id if linked else None,
                    s.set_number,
                    s.set_number_given,
                    list(s.values_raw),
                    *read(s.values_raw, linked),
                )
            )
        splits += _merged_splits(w)
        for pr in w.prs:
            pubkey, d = address_of(pr.exercise, EXERCISE)
            prs.append(
                (w.event_id, pr.position, pr.exercise.raw, pubkey, d, pr.metric, pr.value, pr.raw)
            )
    await copy_rows(conn, "workouts", _WORKOUT_COLUMNS, rows)
    await copy_rows(
        conn,
        "workout_sets",
        (
            "workout_event_id",
            "position",
            "tag_index",
            *_SET_REF,
            "set_number",
            "set_number_given",
            "values_raw",
            *_SET_VALUES,
        ),
        sets,
    )
    await copy_rows(
        conn,
        "workout_splits",
        ("workout_event_id", "split_number", "elapsed_s", "pace_s", "distance_raw"),
        splits,
    )
    await copy_rows(
        conn,
        "workout_prs",
        (
            "workout_event_id",
            "position",
            "exercise_ref",
            "exercise_pubkey",
            "exercise_d",
            "metric",
            "value",
            "raw",
        ),
        prs,
    )


def _merged_splits(w: Workout) -> list[tuple[Any, ...]]:
    """One row per split number: a later tag of a number fills what earlier ones left
    empty (insert_workout_split's ON CONFLICT rule, applied in order)."""
    merged: dict[int, list[Any]] = {}
    for s in w.splits:
        row = merged.get(s.number)
        if row is None:
            merged[s.number] = [w.event_id, s.number, s.elapsed_s, s.pace_s, s.distance_raw]
            continue
        for i, value in ((2, s.elapsed_s), (3, s.pace_s), (4, s.distance_raw)):
            if row[i] is None:
                row[i] = value
    return [tuple(row) for row in merged.values()]


async def copy_lists(conn: Conn, lists: list[FitnessList]) -> None:
    await copy_rows(
        conn,
        "lists",
        ("kind", "pubkey", "d", "event_id", "created_at", "title", "description"),
        [
            (
                lst.kind,
                lst.pubkey,
                lst.d,
                lst.event_id,
                timestamp(lst.created_at),
                lst.title,
                lst.description,
            )
            for lst in lists
        ],
    )
    await copy_rows(
        conn,
        "list_items",
        (
            "list_kind",
            "list_pubkey",
            "list_d",
            "position",
            "member_ref",
            "member_kind",
            "member_pubkey",
            "member_d",
            "relay_hint",
        ),
        [
            (
                lst.kind,
                lst.pubkey,
                lst.d,
                item.position,
                item.member.raw,
                item.member.kind,
                item.member.pubkey,
                item.member.d,
                item.member.relay,
            )
            for lst in lists
            for item in lst.items
        ],
    )
