"""Applying a run of log entries set-based: the batch's net effect, in a few statements.

Applying the log one entry at a time (:class:`indexer.store.FitnessStore`) leaves tables
that depend only on which rows survive the run, never on the states in between: an
address holds its last written version unless that version was removed later, a removal
takes what its event produced, and every reference ends up pointing at (and its set values
read through) whatever is indexed at the address it names when the run ends. So the run is
first folded, in log order and in memory, into that net effect (:class:`NetEffect`); then

1. every row the run removes or replaces is deleted, by event id and by the addresses the
   run writes, with the errors of the events that held them (one statement per table);
2. the surviving rows are copied in (binary COPY, one per table);
3. references to the addresses whose exercise or template changed are re-pointed once: a
   new version read through the same format changes only the id (one UPDATE); otherwise
   the sets are read again through the new format (one SELECT, one UPDATE).

The tables come out equal to the entry-by-entry path's, row for row (the tests compare
both on every corpus and order). Times go in as ``timestamptz`` values computed the way
PostgreSQL's ``to_timestamp(float8)`` computes them; a value that has no Python datetime
raises :class:`Unrepresentable` and the caller applies the run entry by entry instead.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.model import (
    Exercise,
    FitnessList,
    Issue,
    NonWorkout,
    Template,
    Workout,
)
from indexer.store import LinkedExercise, _link, _mapped, _target, _values
from indexer.transform import Outcome
from relay.nostr.kinds import EXERCISE, LIST_KINDS, RECORD_KINDS, WORKOUT_TEMPLATE
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = ["NetEffect", "Unrepresentable", "apply_net_effect"]

_Q = load_queries("indexer.sql")

Address2 = tuple[str, str]
ListAddress = tuple[int, str, str]

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


@dataclass
class NetEffect:
    """What a run of log entries leaves behind, folded in log order.

    ``exercises``, ``templates`` and ``lists`` map every address the run writes to the row
    it holds at the end (None: written, then removed). ``records`` are the workouts and
    non-workouts inserted and not removed again. ``removed`` are the ids of every removal
    by kind class; ``issues`` the index errors of the events whose errors survive.
    """

    exercises: dict[Address2, Exercise | None] = field(default_factory=dict)
    templates: dict[Address2, Template | None] = field(default_factory=dict)
    lists: dict[ListAddress, FitnessList | None] = field(default_factory=dict)
    records: dict[str, Workout | NonWorkout] = field(default_factory=dict)
    removed_exercises: list[str] = field(default_factory=list)
    removed_templates: list[str] = field(default_factory=list)
    removed_records: list[str] = field(default_factory=list)
    removed_lists: list[str] = field(default_factory=list)
    issues: dict[str, list[tuple[int, Issue]]] = field(default_factory=dict)
    _held: dict[str, tuple[str, Any]] = field(default_factory=dict)

    @property
    def removed(self) -> list[str]:
        return (
            self.removed_exercises
            + self.removed_templates
            + self.removed_records
            + self.removed_lists
        )

    def insert(self, event_id: str, kind: int, outcome: Outcome) -> None:
        """One stored event: its row replaces whatever its address held."""
        row = outcome.row
        if isinstance(row, Exercise):
            self._hold("exercise", self.exercises, (row.pubkey, row.d), row)
        elif isinstance(row, Template):
            self._hold("template", self.templates, (row.pubkey, row.d), row)
        elif isinstance(row, FitnessList):
            self._hold("list", self.lists, (row.kind, row.pubkey, row.d), row)
        elif isinstance(row, Workout | NonWorkout):
            self.records[row.event_id] = row
        self.issues.setdefault(event_id, []).extend((kind, issue) for issue in outcome.issues)

    def _hold(self, table: str, rows: dict[Any, Any], key: Any, row: Any) -> None:
        previous = rows.get(key)
        if previous is not None:  # forgotten with its errors, as FitnessStore._forget does
            self.issues.pop(previous.event_id, None)
            self._held.pop(previous.event_id, None)
        rows[key] = row
        self._held[row.event_id] = (table, key)

    def remove(self, event_id: str, kind: int) -> None:
        """One removal: what ``event_id`` produced goes, here and in the tables."""
        self.issues.pop(event_id, None)
        held = self._held.get(event_id)
        if kind == EXERCISE:
            self.removed_exercises.append(event_id)
            if held is not None and held[0] == "exercise":
                self.exercises[held[1]] = None
        elif kind == WORKOUT_TEMPLATE:
            self.removed_templates.append(event_id)
            if held is not None and held[0] == "template":
                self.templates[held[1]] = None
        elif kind in RECORD_KINDS:
            self.removed_records.append(event_id)
            self.records.pop(event_id, None)
        elif kind in LIST_KINDS:
            self.removed_lists.append(event_id)
            if held is not None and held[0] == "list":
                self.lists[held[1]] = None
        else:
            return
        if held is not None and (
            (held[0] == "exercise" and kind == EXERCISE)
            or (held[0] == "template" and kind == WORKOUT_TEMPLATE)
            or (held[0] == "list" and kind in LIST_KINDS)
        ):
            del self._held[event_id]


def _split(keys: Iterable[Address2]) -> tuple[list[str], list[str]]:
    pairs = list(keys)
    return [p for p, _ in pairs], [d for _, d in pairs]


def _linked(row: Any) -> LinkedExercise:
    return LinkedExercise(
        row["event_id"], tuple(row["format"]), tuple(row["format_units"]), row["equipment"]
    )


async def _copy(conn: Conn, table: str, columns: Sequence[str], records: list[Any]) -> None:
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


async def apply_net_effect(conn: Conn, net: NetEffect) -> None:
    """Make the tables what applying the folded run entry by entry would have made them.

    Runs inside the caller's transaction (a savepoint of it, so a refused row rolls the
    whole run back for the entry-by-entry path).
    """
    forgotten: list[str] = []
    old_exercises: dict[Address2, LinkedExercise] = {}
    touched_exercises: set[Address2] = set(net.exercises)
    touched_templates: set[Address2] = set(net.templates)
    if net.removed_exercises or net.exercises:
        pubkeys, ds = _split(net.exercises)
        for r in await conn.fetch(_Q["bulk_remove_exercises"], net.removed_exercises, pubkeys, ds):
            forgotten.append(r["event_id"])
            old_exercises[(r["pubkey"], r["d"])] = _linked(r)
            touched_exercises.add((r["pubkey"], r["d"]))
    if net.removed_templates or net.templates:
        pubkeys, ds = _split(net.templates)
        for r in await conn.fetch(_Q["bulk_remove_templates"], net.removed_templates, pubkeys, ds):
            forgotten.append(r["event_id"])
            touched_templates.add((r["pubkey"], r["d"]))
    if net.removed_lists or net.lists:
        keys = list(net.lists)
        rows = await conn.fetch(
            _Q["bulk_remove_lists"],
            net.removed_lists,
            [k for k, _, _ in keys],
            [p for _, p, _ in keys],
            [d for _, _, d in keys],
        )
        forgotten += [r["event_id"] for r in rows]
    if net.removed_records:
        await conn.execute(_Q["bulk_remove_workouts"], net.removed_records)
        await conn.execute(_Q["bulk_remove_non_workouts"], net.removed_records)
    if net.removed or forgotten:
        await conn.execute(_Q["bulk_remove_errors"], net.removed + forgotten)

    exercises = [ex for ex in net.exercises.values() if ex is not None]
    await _copy_exercises(conn, exercises)
    templates = [t for t in net.templates.values() if t is not None]
    await _copy_templates(conn, templates)

    workouts = [w for w in net.records.values() if isinstance(w, Workout)]
    wanted = set(touched_exercises)
    for t in templates:
        wanted.update(a for s in t.sets if (a := _address(s.exercise)) is not None)
    for w in workouts:
        wanted.update(a for s in w.sets if (a := _address(s.exercise)) is not None)
    known = await _exercise_formats(conn, wanted)
    await _relink_sets(conn, touched_exercises, old_exercises, known)

    if touched_templates:
        pubkeys, ds = _split(touched_templates)
        await conn.execute(_Q["bulk_relink_workouts"], pubkeys, ds)
    await _copy_template_sets(conn, templates, known)
    await _copy_workouts(conn, workouts, known)
    await _copy(
        conn,
        "non_workouts",
        ("event_id", "pubkey", "created_at", "reason"),
        [
            (n.event_id, n.pubkey, timestamp(n.created_at), n.reason)
            for n in net.records.values()
            if isinstance(n, NonWorkout)
        ],
    )
    await _copy_lists(conn, [lst for lst in net.lists.values() if lst is not None])
    await _copy(
        conn,
        "index_errors",
        ("event_id", "kind", "tag_index", "reason", "detail"),
        [
            (event_id, kind, issue.tag_index, issue.reason, issue.detail)
            for event_id, issues in net.issues.items()
            for kind, issue in issues
        ],
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
    return _values(_mapped(values_raw, linked, prescribed=prescribed))


def _read(
    values_raw: Sequence[str], linked: LinkedExercise | None, prescribed: bool = False
) -> tuple[Any, ...]:
    """A set's mapped values (the columns of :data:`_SET_VALUES`), through a cache: sets
    repeat a small vocabulary of values and formats, and the mapping is pure."""
    if linked is None:
        return _reading(tuple(values_raw), None, None, None, prescribed)
    return _reading(
        tuple(values_raw), linked.format, linked.format_units, linked.equipment, prescribed
    )


def _address(ref: Any) -> Address2 | None:
    pubkey, d = _target(ref, EXERCISE)
    return None if pubkey is None or d is None else (pubkey, d)


async def _exercise_formats(
    conn: Conn, wanted: Iterable[Address2]
) -> dict[Address2, LinkedExercise]:
    pubkeys, ds = _split(wanted)
    if not pubkeys:
        return {}
    rows = await conn.fetch(_Q["exercise_formats"], pubkeys, ds)
    return {(r["pubkey"], r["d"]): _linked(r) for r in rows}


def _same_reading(old: LinkedExercise, new: LinkedExercise) -> bool:
    """Whether sets read through ``old`` read the same through ``new``."""
    return (old.format, old.format_units, old.equipment) == (
        new.format,
        new.format_units,
        new.equipment,
    )


async def _relink_sets(
    conn: Conn,
    touched: set[Address2],
    old: dict[Address2, LinkedExercise],
    known: dict[Address2, LinkedExercise],
) -> None:
    """Re-point the stored sets naming the addresses whose exercise the run changed.

    Before the run every stored set at an address was read through the exercise indexed
    there (or the default order when none was), so a set needs reading again only when the
    format, units or equipment differ.
    """
    repoint: list[tuple[str, str, str]] = []
    reread: list[Address2] = []
    for address in touched:
        before, after = old.get(address), known.get(address)
        if before is None and after is None:
            continue
        if before is not None and after is not None and _same_reading(before, after):
            repoint.append((*address, after.event_id))
        else:
            reread.append(address)
    if repoint:
        columns = [list(c) for c in zip(*repoint, strict=True)]
        await conn.execute(_Q["bulk_repoint_template_sets"], *columns)
        await conn.execute(_Q["bulk_repoint_workout_sets"], *columns)
    if not reread:
        return
    pubkeys, ds = _split(reread)
    updates: list[tuple[Any, ...]] = []
    for r in await conn.fetch(_Q["bulk_template_sets_of_exercises"], pubkeys, ds):
        linked = known.get((r["exercise_pubkey"], r["exercise_d"]))
        event_id = linked.event_id if linked else None
        updates.append((r["template_pubkey"], r["template_d"], r["position"], event_id))
        updates[-1] += _read(r["values_raw"], linked, prescribed=True)
    if updates:
        await conn.execute(_Q["bulk_relink_template_sets"], *_columns(updates, 15))
    updates = []
    for r in await conn.fetch(_Q["bulk_workout_sets_of_exercises"], pubkeys, ds):
        linked = known.get((r["exercise_pubkey"], r["exercise_d"]))
        event_id = linked.event_id if linked else None
        values = _read(r["values_raw"], linked)
        updates.append((r["workout_event_id"], r["position"], event_id, *values))
    if updates:
        await conn.execute(_Q["bulk_relink_workout_sets"], *_columns(updates, 14))


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def _copy_exercises(conn: Conn, exercises: list[Exercise]) -> None:
    await _copy(
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
    await _copy(
        conn,
        "exercise_hashtags",
        ("pubkey", "d", "tag", "raw"),
        [(ex.pubkey, ex.d, tag.tag, tag.raw) for ex in exercises for tag in ex.hashtags],
    )
    await _copy(
        conn,
        "exercise_media",
        ("pubkey", "d", "position", "url", "mime_type", "width", "height", "alt", "raw"),
        [
            (ex.pubkey, ex.d, i, m.url, m.mime_type, m.width, m.height, m.alt, m.raw)
            for ex in exercises
            for i, m in enumerate(ex.media)
        ],
    )


async def _copy_templates(conn: Conn, templates: list[Template]) -> None:
    await _copy(
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


async def _copy_template_sets(
    conn: Conn, templates: list[Template], known: dict[Address2, LinkedExercise]
) -> None:
    rows = []
    for t in templates:
        for s in t.sets:
            pubkey, d, linked = _link(s.exercise, known)
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
                    *_read(s.values_raw, linked, prescribed=True),
                )
            )
    await _copy(
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


async def _copy_workouts(
    conn: Conn, workouts: list[Workout], known: dict[Address2, LinkedExercise]
) -> None:
    refs = {_target(w.template, WORKOUT_TEMPLATE) for w in workouts if w.template is not None}
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
            template_pubkey, template_d = _target(w.template, WORKOUT_TEMPLATE)
        template_event = None
        if template_pubkey is not None and template_d is not None:
            template_event = templates.get((template_pubkey, template_d))
        rows.append(
            (
                w.event_id,
                w.kind,
                w.pubkey,
                w.d,
                timestamp(w.created_at),
                w.dialect,
                w.title,
                w.workout_type,
                w.activity,
                w.activity_raw,
                timestamp(w.started_at),
                timestamp(w.ended_at),
                w.start_raw,
                w.end_raw,
                w.duration_s,
                w.duration_raw,
                w.completed,
                w.rounds_completed,
                w.interval_s,
                w.template.raw if w.template else None,
                template_pubkey,
                template_d,
                w.template.relay if w.template else None,
                template_event,
                w.notes,
                w.client,
                w.source,
                [tag.tag for tag in w.hashtags],
                w.distance_m,
                w.distance_raw,
                w.distance_unit,
                w.elevation_gain_m,
                w.elevation_loss_m,
                w.calories,
                w.steps,
                w.avg_heart_rate,
                w.max_heart_rate,
                w.avg_pace_s_per_km,
                w.avg_pace_raw,
                w.avg_pace_unit,
            )
        )
        for s in w.sets:
            pubkey, d, linked = _link(s.exercise, known)
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
                    *_read(s.values_raw, linked),
                )
            )
        splits += _merged_splits(w)
        for pr in w.prs:
            pubkey, d = _target(pr.exercise, EXERCISE)
            prs.append(
                (w.event_id, pr.position, pr.exercise.raw, pubkey, d, pr.metric, pr.value, pr.raw)
            )
    await _copy(conn, "workouts", _WORKOUT_COLUMNS, rows)
    await _copy(
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
    await _copy(
        conn,
        "workout_splits",
        ("workout_event_id", "split_number", "elapsed_s", "pace_s", "distance_raw"),
        splits,
    )
    await _copy(
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


async def _copy_lists(conn: Conn, lists: list[FitnessList]) -> None:
    await _copy(
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
    await _copy(
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
