"""Writes what the transforms derive into the fitness tables, inside the caller's transaction.

Every change is keyed by the event that caused it, so applying the log in order is enough
to keep the tables equal to a rebuild: an insertion replaces whatever its address held, a
removal deletes what its event produced. References are resolved by address when a row is
written and re-linked (and their set values re-read through the new format) whenever the
exercise or template they name is written or removed.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.model import (
    Address,
    Exercise,
    FitnessList,
    Issue,
    NonWorkout,
    SetValues,
    Template,
    Workout,
)
from indexer.sets import map_set
from indexer.transform import Derived
from relay.nostr.kinds import EXERCISE, LIST_KINDS, RECORD_KINDS, WORKOUT_TEMPLATE
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = ["FitnessStore", "LinkedExercise", "address_of", "read_set", "resolve", "set_columns"]


_Q = load_queries("indexer.sql")


@dataclass(frozen=True, slots=True)
class LinkedExercise:
    """The indexed exercise a set reference resolves to."""

    event_id: str
    format: tuple[str, ...]
    format_units: tuple[str | None, ...]
    equipment: str | None = None


def set_columns(values: SetValues) -> tuple[Any, ...]:
    """A set's mapped values in the column order of the set tables (weight_kg … mapped_by)."""
    return (
        values.weight_kg,
        values.weight_raw,
        values.weight_unit,
        values.reps,
        values.rpe,
        values.set_type,
        values.set_type_raw,
        values.duration_s,
        values.distance_m,
        values.heart_rate,
        values.mapped_by,
    )


def address_of(ref: Address, kind: int) -> tuple[str | None, str | None]:
    """The (pubkey, d) a reference can resolve to; (None, None) when it names another kind
    or is malformed."""
    if ref.kind != kind or ref.pubkey is None or ref.d is None:
        return None, None
    return ref.pubkey, ref.d


def resolve(
    ref: Address, known: dict[tuple[str, str], LinkedExercise]
) -> tuple[str | None, str | None, LinkedExercise | None]:
    """The exercise address a set names, and the indexed exercise there if any."""
    pubkey, d = address_of(ref, EXERCISE)
    if pubkey is None or d is None:
        return None, None, None
    return pubkey, d, known.get((pubkey, d))


def read_set(
    values_raw: Sequence[str], linked: LinkedExercise | None, *, prescribed: bool = False
) -> SetValues:
    """A set's values read through the exercise it resolves to (the spec's default order when
    unresolved); ``prescribed`` for a template's set, where a blank weight means "fill in"."""
    if linked is None:
        return map_set(values_raw, None, None, prescribed=prescribed)
    return map_set(
        values_raw,
        linked.format,
        linked.format_units,
        equipment=linked.equipment,
        prescribed=prescribed,
    )


class FitnessStore:
    """The fitness tables, written through one connection (the caller owns the transaction)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.references: collections.Counter[str] = collections.Counter()
        """Referenced addresses looked up, by whether they were indexed (local) or not
        (missing)."""

    # -- removal ---------------------------------------------------------------------------

    async def remove_event(self, event_id: str, kind: int) -> None:
        """Delete everything ``event_id`` produced and unlink what referenced it."""
        conn = self.conn
        await conn.execute(_Q["remove_errors"], event_id)
        if kind == EXERCISE:
            row = await conn.fetchrow(_Q["remove_exercise"], event_id)
            if row is not None:
                await self._relink_sets(row["pubkey"], row["d"], None)
        elif kind == WORKOUT_TEMPLATE:
            row = await conn.fetchrow(_Q["remove_template"], event_id)
            if row is not None:
                await conn.execute(_Q["relink_workouts"], row["pubkey"], row["d"], None)
        elif kind in RECORD_KINDS:
            await conn.execute(_Q["remove_workout"], event_id)
            await conn.execute(_Q["remove_non_workout"], event_id)
        elif kind in LIST_KINDS:
            await conn.execute(_Q["remove_list"], event_id)

    # -- insertion -------------------------------------------------------------------------

    async def write(self, row: Derived | None) -> None:
        """Write the rows derived from one stored event (replacing its address's rows)."""
        if isinstance(row, Exercise):
            await self._write_exercise(row)
        elif isinstance(row, Template):
            await self._write_template(row)
        elif isinstance(row, Workout):
            await self._write_workout(row)
        elif isinstance(row, NonWorkout):
            await self.conn.execute(
                _Q["insert_non_workout"], row.event_id, row.pubkey, row.created_at, row.reason
            )
        elif isinstance(row, FitnessList):
            await self._write_list(row)

    async def write_issues(self, event_id: str, kind: int, issues: Iterable[Issue]) -> None:
        await self.conn.executemany(
            _Q["insert_error"],
            [(event_id, kind, issue.tag_index, issue.reason, issue.detail) for issue in issues],
        )

    async def _forget(self, query: str, *address: object) -> None:
        """Delete the rows an address held, and the errors of the version that held it."""
        for row in await self.conn.fetch(query, *address):
            await self.conn.execute(_Q["remove_errors"], row["event_id"])

    async def _write_exercise(self, ex: Exercise) -> None:
        conn = self.conn
        await self._forget(_Q["remove_exercise_address"], ex.pubkey, ex.d)
        await conn.execute(
            _Q["insert_exercise"],
            ex.pubkey,
            ex.d,
            ex.event_id,
            ex.created_at,
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
        await conn.executemany(
            _Q["insert_exercise_hashtag"],
            [(ex.pubkey, ex.d, tag.tag, tag.raw) for tag in ex.hashtags],
        )
        await conn.executemany(
            _Q["insert_exercise_media"],
            [
                (ex.pubkey, ex.d, i, m.url, m.mime_type, m.width, m.height, m.alt, m.raw)
                for i, m in enumerate(ex.media)
            ],
        )
        linked = LinkedExercise(ex.event_id, ex.format, ex.format_units, ex.equipment)
        await self._relink_sets(ex.pubkey, ex.d, linked)

    async def _relink_sets(self, pubkey: str, d: str, linked: LinkedExercise | None) -> None:
        """Point every set naming ``(pubkey, d)`` at ``linked`` and re-read its values."""
        conn = self.conn
        event_id = linked.event_id if linked else None
        rows = await conn.fetch(_Q["template_sets_of_exercise"], pubkey, d)
        await conn.executemany(
            _Q["relink_template_set"],
            [
                (
                    r["template_pubkey"],
                    r["template_d"],
                    r["position"],
                    event_id,
                    *set_columns(read_set(r["values_raw"], linked, prescribed=True)),
                )
                for r in rows
            ],
        )
        rows = await conn.fetch(_Q["workout_sets_of_exercise"], pubkey, d)
        await conn.executemany(
            _Q["relink_workout_set"],
            [
                (
                    r["workout_event_id"],
                    r["position"],
                    event_id,
                    *set_columns(read_set(r["values_raw"], linked)),
                )
                for r in rows
            ],
        )

    async def _exercises(self, refs: Iterable[Address]) -> dict[tuple[str, str], LinkedExercise]:
        """The indexed exercises among ``refs``, by address."""
        keys = {address_of(ref, EXERCISE) for ref in refs}
        wanted = [(p, d) for p, d in keys if p is not None and d is not None]
        if not wanted:
            return {}
        rows = await self.conn.fetch(
            _Q["exercise_formats"], [p for p, _ in wanted], [d for _, d in wanted]
        )
        self.references["local"] += len(rows)
        self.references["missing"] += len(wanted) - len(rows)
        return {
            (r["pubkey"], r["d"]): LinkedExercise(
                r["event_id"], tuple(r["format"]), tuple(r["format_units"]), r["equipment"]
            )
            for r in rows
        }

    async def _write_template(self, t: Template) -> None:
        conn = self.conn
        await self._forget(_Q["remove_template_address"], t.pubkey, t.d)
        await conn.execute(
            _Q["insert_template"],
            t.pubkey,
            t.d,
            t.event_id,
            t.created_at,
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
        known = await self._exercises(s.exercise for s in t.sets)
        rows = []
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
                    *set_columns(read_set(s.values_raw, linked, prescribed=True)),
                )
            )
        await conn.executemany(_Q["insert_template_set"], rows)
        await conn.execute(_Q["relink_workouts"], t.pubkey, t.d, t.event_id)

    async def _write_workout(self, w: Workout) -> None:
        conn = self.conn
        template_pubkey, template_d = (None, None)
        template_event = None
        if w.template is not None:
            template_pubkey, template_d = address_of(w.template, WORKOUT_TEMPLATE)
            if template_pubkey is not None:
                template_event = await conn.fetchval(
                    _Q["template_event"], template_pubkey, template_d
                )
                self.references["missing" if template_event is None else "local"] += 1
        await conn.execute(
            _Q["insert_workout"],
            *workout_values(w, template_pubkey, template_d, template_event),
        )
        known = await self._exercises(s.exercise for s in w.sets)
        rows = []
        for s in w.sets:
            pubkey, d, linked = resolve(s.exercise, known)
            rows.append(
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
                    *set_columns(read_set(s.values_raw, linked)),
                )
            )
        await conn.executemany(_Q["insert_workout_set"], rows)
        await conn.executemany(
            _Q["insert_workout_split"],
            [(w.event_id, s.number, s.elapsed_s, s.pace_s, s.distance_raw) for s in w.splits],
        )
        prs = []
        for pr in w.prs:
            pubkey, d = address_of(pr.exercise, EXERCISE)
            prs.append(
                (w.event_id, pr.position, pr.exercise.raw, pubkey, d, pr.metric, pr.value, pr.raw)
            )
        await conn.executemany(_Q["insert_workout_pr"], prs)

    async def _write_list(self, lst: FitnessList) -> None:
        conn = self.conn
        await self._forget(_Q["remove_list_address"], lst.kind, lst.pubkey, lst.d)
        await conn.execute(
            _Q["insert_list"],
            lst.kind,
            lst.pubkey,
            lst.d,
            lst.event_id,
            lst.created_at,
            lst.title,
            lst.description,
        )
        await conn.executemany(
            _Q["insert_list_item"],
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
                for item in lst.items
            ],
        )


def workout_values(
    w: Workout,
    template_pubkey: str | None,
    template_d: str | None,
    template_event: str | None,
    time: Callable[[float | None], object] = lambda seconds: seconds,
) -> tuple[object, ...]:
    """The columns of ``w``'s ``fitness.workouts`` row, in the order of ``insert_workout``
    and of the COPY in :mod:`indexer.rowcopy`; ``time`` turns its times into what the
    statement takes (``insert_workout`` takes seconds and converts them itself)."""
    return (
        w.event_id,
        w.kind,
        w.pubkey,
        w.d,
        time(w.created_at),
        w.dialect,
        w.title,
        w.workout_type,
        w.activity,
        w.activity_raw,
        time(w.started_at),
        time(w.ended_at),
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
