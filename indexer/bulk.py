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

from collections.abc import Iterable
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
from indexer.rowcopy import (
    Unrepresentable,
    copy_exercises,
    copy_lists,
    copy_rows,
    copy_template_sets,
    copy_templates,
    copy_workouts,
    read,
    timestamp,
)
from indexer.store import LinkedExercise, address_of
from indexer.transform import Outcome
from relay.nostr.kinds import EXERCISE, LIST_KINDS, RECORD_KINDS, WORKOUT_TEMPLATE
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = ["NetEffect", "Unrepresentable", "apply_net_effect"]

_Q = load_queries("indexer.sql")

Address2 = tuple[str, str]
ListAddress = tuple[int, str, str]


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
    await copy_exercises(conn, exercises)
    templates = [t for t in net.templates.values() if t is not None]
    await copy_templates(conn, templates)

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
    await copy_template_sets(conn, templates, known)
    await copy_workouts(conn, workouts, known)
    await copy_rows(
        conn,
        "non_workouts",
        ("event_id", "pubkey", "created_at", "reason"),
        [
            (n.event_id, n.pubkey, timestamp(n.created_at), n.reason)
            for n in net.records.values()
            if isinstance(n, NonWorkout)
        ],
    )
    await copy_lists(conn, [lst for lst in net.lists.values() if lst is not None])
    await copy_rows(
        conn,
        "index_errors",
        ("event_id", "kind", "tag_index", "reason", "detail"),
        [
            (event_id, kind, issue.tag_index, issue.reason, issue.detail)
            for event_id, issues in net.issues.items()
            for kind, issue in issues
        ],
    )


def _address(ref: Any) -> Address2 | None:
    pubkey, d = address_of(ref, EXERCISE)
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
        updates[-1] += read(r["values_raw"], linked, prescribed=True)
    if updates:
        await conn.execute(_Q["bulk_relink_template_sets"], *_columns(updates, 15))
    updates = []
    for r in await conn.fetch(_Q["bulk_workout_sets_of_exercises"], pubkeys, ds):
        linked = known.get((r["exercise_pubkey"], r["exercise_d"]))
        event_id = linked.event_id if linked else None
        values = read(r["values_raw"], linked)
        updates.append((r["workout_event_id"], r["position"], event_id, *values))
    if updates:
        await conn.execute(_Q["bulk_relink_workout_sets"], *_columns(updates, 14))


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]
