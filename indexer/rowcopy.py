"""The rows of a set-based batch, as binary COPY writes them (see :mod:`indexer.bulk`).

Each function takes the surviving rows of one kind and copies them, and their child rows,
into the fitness tables in one COPY per table. The columns and values are those the
entry-by-entry path (:mod:`indexer.store`) inserts; times become ``timestamptz`` values
computed as PostgreSQL's ``to_timestamp(float8)`` computes them.

The large tables (workouts, their sets, splits and claims; template sets) are encoded here
(:mod:`indexer.pgbinary`) rather than by asyncpg from tuples: a set's row is a join of a
few fields, and its longest parts, the mapped values and the exercise reference, repeat
from set to set and are encoded once (cached as bytes). The small tables go through
asyncpg's ``copy_records_to_table``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from indexer import pgbinary
from indexer.model import Exercise, FitnessList, Template, Workout
from indexer.pgbinary import Unrepresentable
from indexer.setfields import SetFields, read
from indexer.store import (
    LinkedExercise,
    address_of,
    workout_values,
)
from relay.nostr.kinds import EXERCISE, WORKOUT_TEMPLATE
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = [
    "Unrepresentable",
    "copy_binary",
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


def timestamp(seconds: float | None) -> dt.datetime | None:
    """``to_timestamp(seconds)`` as PostgreSQL computes it (:func:`pgbinary.timestamptz_micros`),
    as a datetime."""
    if seconds is None:
        return None
    return _PG_EPOCH + dt.timedelta(microseconds=pgbinary.timestamptz_micros(seconds))


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


def _set_columns(prescribed: bool) -> tuple[str, ...]:
    head = ("template_pubkey", "template_d") if prescribed else ("workout_event_id",)
    group = ("group_number",) if prescribed else ()
    return (
        *head,
        "position",
        "tag_index",
        *_SET_REF,
        "set_number",
        "set_number_given",
        *group,
        "values_raw",
        *_SET_VALUES,
    )


_TEMPLATE_SET_COLUMNS = _set_columns(prescribed=True)
_WORKOUT_SET_COLUMNS = _set_columns(prescribed=False)
_TEMPLATE_SET_ROW = pgbinary.row_header(len(_TEMPLATE_SET_COLUMNS))
_WORKOUT_SET_ROW = pgbinary.row_header(len(_WORKOUT_SET_COLUMNS))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def copy_binary(conn: Conn, table: str, columns: Sequence[str], rows: list[bytes]) -> None:
    """COPY tuples already encoded (:mod:`indexer.pgbinary`) into ``fitness.<table>``."""
    if rows:
        await conn.copy_to_table(
            table,
            schema_name="fitness",
            columns=list(columns),
            source=_once(pgbinary.payload(rows)),
            format="binary",
        )


async def copy_template_sets(
    conn: Conn, templates: list[Template], known: dict[Address2, LinkedExercise]
) -> None:
    text, int4 = pgbinary.text, pgbinary.int4
    encoded = SetFields(known, prescribed=True)
    rows = []
    for t in templates:
        owner = text(t.pubkey) + text(t.d)
        for s in t.sets:
            reference, values = encoded.of(s.exercise, s.values_raw)
            rows.append(
                b"".join(
                    (
                        _TEMPLATE_SET_ROW,
                        owner,
                        int4(s.position),
                        int4(s.tag_index),
                        reference,
                        int4(s.set_number),
                        pgbinary.TRUE if s.set_number_given else pgbinary.FALSE,
                        int4(s.group_number),
                        values,
                    )
                )
            )
    await copy_binary(conn, "template_sets", _TEMPLATE_SET_COLUMNS, rows)


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
_T, _I, _F = pgbinary.text, pgbinary.int4, pgbinary.float8
_WORKOUT_TYPES: tuple[Callable[[Any], bytes], ...] = (
    _T,  # event_id
    _I,  # kind
    _T,  # pubkey
    _T,  # d
    pgbinary.timestamptz,  # created_at
    _T,  # dialect
    _T,  # title
    _T,  # workout_type
    _T,  # activity
    _T,  # activity_raw
    pgbinary.timestamptz,  # started_at
    pgbinary.timestamptz,  # ended_at
    _T,  # start_raw
    _T,  # end_raw
    _F,  # duration_s
    _T,  # duration_raw
    pgbinary.boolean,  # completed
    _F,  # rounds_completed
    _F,  # interval_s
    _T,  # template_ref
    _T,  # template_pubkey
    _T,  # template_d
    _T,  # template_relay
    _T,  # template_event_id
    _T,  # notes
    _T,  # client
    _T,  # source
    pgbinary.text_array,  # hashtags
    _F,  # distance_m
    _T,  # distance_raw
    _T,  # distance_unit
    _F,  # elevation_gain_m
    _F,  # elevation_loss_m
    _F,  # calories
    _F,  # steps
    _F,  # avg_heart_rate
    _F,  # max_heart_rate
    _F,  # avg_pace_s_per_km
    _T,  # avg_pace_raw
    _T,  # avg_pace_unit
)
_WORKOUT_ROW = pgbinary.row_header(len(_WORKOUT_COLUMNS))
_SPLIT_COLUMNS = ("workout_event_id", "split_number", "elapsed_s", "pace_s", "distance_raw")
_SPLIT_ROW = pgbinary.row_header(len(_SPLIT_COLUMNS))
_PR_COLUMNS = (
    "workout_event_id",
    "position",
    "exercise_ref",
    "exercise_pubkey",
    "exercise_d",
    "metric",
    "value",
    "raw",
)
_PR_ROW = pgbinary.row_header(len(_PR_COLUMNS))


def _identity(seconds: float | None) -> float | None:
    return seconds


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
    text, int4, float8 = pgbinary.text, pgbinary.int4, pgbinary.float8
    encoded = SetFields(known, prescribed=False)
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
        columns = workout_values(w, template_pubkey, template_d, template_event, _identity)
        fields = [encode(v) for encode, v in zip(_WORKOUT_TYPES, columns, strict=True)]
        rows.append(_WORKOUT_ROW + b"".join(fields))
        owner = fields[0]
        for s in w.sets:
            reference, values = encoded.of(s.exercise, s.values_raw)
            sets.append(
                b"".join(
                    (
                        _WORKOUT_SET_ROW,
                        owner,
                        int4(s.position),
                        int4(s.tag_index),
                        reference,
                        int4(s.set_number),
                        pgbinary.TRUE if s.set_number_given else pgbinary.FALSE,
                        values,
                    )
                )
            )
        for number, elapsed, pace, distance in _merged_splits(w):
            splits.append(
                b"".join(
                    (_SPLIT_ROW, owner, int4(number), float8(elapsed), float8(pace), text(distance))
                )
            )
        for pr in w.prs:
            pubkey, d = address_of(pr.exercise, EXERCISE)
            prs.append(
                b"".join(
                    (
                        _PR_ROW,
                        owner,
                        int4(pr.position),
                        text(pr.exercise.raw),
                        text(pubkey),
                        text(d),
                        text(pr.metric),
                        float8(pr.value),
                        text(pr.raw),
                    )
                )
            )
    await copy_binary(conn, "workouts", _WORKOUT_COLUMNS, rows)
    await copy_binary(conn, "workout_sets", _WORKOUT_SET_COLUMNS, sets)
    await copy_binary(conn, "workout_splits", _SPLIT_COLUMNS, splits)
    await copy_binary(conn, "workout_prs", _PR_COLUMNS, prs)


def _merged_splits(w: Workout) -> list[tuple[int, float | None, float | None, str | None]]:
    """One row per split number: a later tag of a number fills what earlier ones left
    empty (insert_workout_split's ON CONFLICT rule, applied in order)."""
    merged: dict[int, list[Any]] = {}
    for s in w.splits:
        row = merged.get(s.number)
        if row is None:
            merged[s.number] = [s.number, s.elapsed_s, s.pace_s, s.distance_raw]
            continue
        for i, value in ((1, s.elapsed_s), (2, s.pace_s), (3, s.distance_raw)):
            if row[i] is None:
                row[i] = value
    return [(row[0], row[1], row[2], row[3]) for row in merged.values()]


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
