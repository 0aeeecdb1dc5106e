"""One stored event in, the row it materializes out: the indexer's pure entry point.

:func:`derive` dispatches on the kind and never raises. Only an event that cannot be
indexed at all gets ``row=None`` (a non-fitness kind, a NIP-51 set without exercise or
template members, or a parser failure, reported as a ``parser_error`` issue); anything
less is an issue beside a row. A kind 1301 that is not a workout becomes a NonWorkout row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from indexer.collection import parse_list
from indexer.exercise import parse_exercise
from indexer.model import Exercise, FitnessList, Issue, NonWorkout, Template, Workout
from indexer.record import parse_record
from indexer.template import parse_template
from relay.nostr.event import Event
from relay.nostr.kinds import EXERCISE, LIST_KINDS, RECORD_KINDS, WORKOUT_TEMPLATE

__all__ = ["Derived", "Outcome", "derive"]


Derived: TypeAlias = Exercise | Template | Workout | NonWorkout | FitnessList

_DETAIL_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    """The row an event materializes (None when nothing) and what could not be read."""

    row: Derived | None
    issues: tuple[Issue, ...]


def _parse(event: Event) -> tuple[Derived | None, list[Issue]]:
    kind = event.kind
    if kind == EXERCISE:
        return parse_exercise(event)
    if kind == WORKOUT_TEMPLATE:
        return parse_template(event)
    if kind in RECORD_KINDS:
        return parse_record(event)
    if kind in LIST_KINDS:
        return parse_list(event)
    return None, []


def derive(event: Event) -> Outcome:
    """The row and issues for one event; an unexpected failure becomes ``parser_error``."""
    try:
        row, issues = _parse(event)
    except Exception as exc:  # the indexer must keep going past any one event
        detail = f"{type(exc).__name__}: {exc}"[:_DETAIL_LIMIT]
        return Outcome(None, (Issue("parser_error", detail),))
    return Outcome(row, tuple(issues))
