"""Workout records (kind 1301 in both dialects, legacy 33403) into Workout / NonWorkout rows.

The dialect is told apart first (:mod:`indexer.dialect`); a record in neither dialect is a
:class:`~indexer.model.NonWorkout` whose tags are never read as sets.

Field decisions:

- singleton tags: the first wins (:mod:`indexer.tags`); ``title`` falls back to RUNSTR's
  legacy ``["workout", name]``; ``d`` is the first ``d`` value (None for a 1301 without
  one, ``""`` for a 33403, whose address needs one);
- ``activity``: the ``type`` tag, else the first RUNSTR verb, else ``activity``; lowercased,
  with ``run``/``walk``/``cycle``/``hike``/``swim``/``row``/``bike`` expanded;
- ``start``/``end`` (else RUNSTR's ``workout_start_time`` for the start) are unix seconds,
  values above 10^12 read as milliseconds. ``end`` may be ``""`` (no time, no issue) or
  earlier than ``start`` (both kept, ``end_before_start`` noted);
- ``duration_s``: the ``duration`` tag in any form (seconds, ``MM:SS``, ``HH:MM:SS``, its
  third element as unit), else ``end - start`` when both exist and end is not earlier;
- one :class:`~indexer.model.PerformedSet` per ``exercise`` tag in tag order (nip101e only),
  values raw minus a trailing set_number, unnumbered sets counted per coordinate;
- the template is the ``template`` tag, else the first ``a`` tag naming a kind 33402 (v5);
- ``pr`` tags are personal-record claims (:mod:`indexer.claims`);
- distance without a unit is kilometres (RUNSTR's default), elevation without one metres;
- splits are read by :mod:`indexer.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexer.address import address_issue, parse_address
from indexer.claims import read_claims
from indexer.dialect import detect_dialect, find_activity_verb, find_template_a
from indexer.model import Address, Issue, NonWorkout, PerformedSet, Workout
from indexer.sets import read_set_tags
from indexer.splits import read_splits
from indexer.tags import (
    client,
    first_value,
    hashtags,
    index_of,
    lowered,
    read_duration,
    read_number,
    singleton,
    stripped,
)
from indexer.units import distance_to_m, parse_bool, parse_number, parse_pace, parse_timestamp
from relay.nostr.event import Event
from relay.nostr.kinds import WORKOUT_RECORD_LEGACY, WORKOUT_TEMPLATE

__all__ = ["parse_record"]

Tags = Sequence[Sequence[str]]

_VERB_ACTIVITY = {
    "run": "running",
    "walk": "walking",
    "cycle": "cycling",
    "bike": "cycling",
    "hike": "hiking",
    "swim": "swimming",
    "row": "rowing",
}


def _template(tags: Tags, issues: list[Issue]) -> Address | None:
    index = index_of(tags, "template")
    found: tuple[int, Address] | None = None
    if index is not None:
        tag = tags[index]
        found = index, parse_address(tag[1], tag[2] if len(tag) > 2 else None)
    else:
        found = find_template_a(tags)
    if found is None:
        return None
    problem = address_issue(found[1], WORKOUT_TEMPLATE, found[0])
    if problem is not None:
        issues.append(problem)
    return found[1]


def _activity(value: str) -> str | None:
    text = value.strip().lower()
    return _VERB_ACTIVITY.get(text, text) or None


@dataclass(frozen=True, slots=True)
class _Times:
    started_at: float | None
    ended_at: float | None
    start_raw: str | None
    end_raw: str | None
    duration_s: float | None
    duration_raw: str | None


def _timestamp(tags: Tags, name: str, issues: list[Issue]) -> tuple[str | None, float | None]:
    raw = singleton(tags, name, issues)
    if raw is None or not raw.strip():
        return raw, None
    value = parse_timestamp(raw)
    if value is None:
        issues.append(Issue("bad_timestamp", f"{name}: {raw!r}", index_of(tags, name)))
    return raw, value


def _times(tags: Tags, issues: list[Issue]) -> _Times:
    start_raw, started_at = _timestamp(tags, "start", issues)
    if start_raw is None:
        start_raw, started_at = _timestamp(tags, "workout_start_time", issues)
    end_raw, ended_at = _timestamp(tags, "end", issues)
    sane = started_at is not None and ended_at is not None and ended_at >= started_at
    if started_at is not None and ended_at is not None and not sane:
        issues.append(Issue("end_before_start", f"start {start_raw!r}, end {end_raw!r}"))
    duration_raw = first_value(tags, "duration")
    duration_s = read_duration(tags, "duration", issues)
    if duration_s is None and sane and started_at is not None and ended_at is not None:
        duration_s = ended_at - started_at
    return _Times(started_at, ended_at, start_raw, end_raw, duration_s, duration_raw)


def _sets(tags: Tags, issues: list[Issue]) -> tuple[PerformedSet, ...]:
    return tuple(
        PerformedSet(
            position=position,
            tag_index=s.tag_index,
            exercise=s.exercise,
            values_raw=s.values_raw,
            set_number=s.set_number,
            set_number_given=s.set_number_given,
        )
        for position, s in enumerate(read_set_tags(tags, issues))
    )


@dataclass(frozen=True, slots=True)
class _Measure:
    value: float | None
    raw: str | None
    unit: str | None


def _measure(tags: Tags, name: str, default_unit: str, issues: list[Issue]) -> _Measure:
    index = index_of(tags, name)
    raw = singleton(tags, name, issues)
    if index is None or raw is None:
        return _Measure(None, None, None)
    tag = tags[index]
    unit = tag[2] if len(tag) > 2 else None
    number = parse_number(raw)
    if number is None:
        if raw.strip():
            issues.append(Issue("bad_number", f"{name}: {raw!r}", index))
        return _Measure(None, raw, unit)
    metres = distance_to_m(number, unit, default_unit)
    if metres is None:
        issues.append(Issue("unknown_unit", f"{name}: {unit!r}", index))
    return _Measure(metres, raw, unit)


def _pace(tags: Tags, issues: list[Issue]) -> _Measure:
    index = index_of(tags, "avg_pace")
    raw = singleton(tags, "avg_pace", issues)
    if index is None or raw is None:
        return _Measure(None, None, None)
    tag = tags[index]
    unit = tag[2] if len(tag) > 2 else None
    pace = parse_pace(raw, unit)
    if pace is None and raw.strip():
        issues.append(Issue("bad_pace", f"avg_pace: {raw!r} {unit!r}", index))
    return _Measure(pace, raw, unit)


def _completed(tags: Tags, issues: list[Issue]) -> bool | None:
    raw = singleton(tags, "completed", issues)
    value = parse_bool(raw)
    if raw is not None and raw.strip() and value is None:
        issues.append(Issue("bad_boolean", f"completed: {raw!r}", index_of(tags, "completed")))
    return value


def _activity_of(tags: Tags, dialect: str, issues: list[Issue]) -> tuple[str | None, str | None]:
    raw = singleton(tags, "type", issues)
    if raw is None and dialect == "runstr":
        raw = find_activity_verb(tags)
    if raw is None:
        raw = singleton(tags, "activity", issues)
    return (None, None) if raw is None else (_activity(raw), raw)


def _missing(tags: Tags, names: Sequence[str], issues: list[Issue]) -> None:
    for name in names:
        if index_of(tags, name) is None:
            issues.append(Issue(f"missing_{name}", f"no {name} tag"))


def parse_record(event: Event) -> tuple[Workout | NonWorkout, list[Issue]]:
    """Read a kind 1301 or 33403 event as a workout in its dialect, or a NonWorkout."""
    dialect = detect_dialect(event)
    if dialect not in ("nip101e", "runstr"):
        return NonWorkout(event.id, event.pubkey, event.created_at, dialect), []
    issues: list[Issue] = []
    tags = event.tags
    if dialect == "nip101e":
        _missing(tags, ("d", "title", "type", "start", "end", "completed"), issues)
    else:
        _missing(tags, ("d",), issues)
    d = singleton(tags, "d", issues)
    if d is None and event.kind == WORKOUT_RECORD_LEGACY:
        d = ""
    title = singleton(tags, "title", issues)
    if title is None:
        title = singleton(tags, "workout", issues)
    if title is None and dialect == "runstr":
        issues.append(Issue("missing_title", "no title or workout tag"))
    activity, activity_raw = _activity_of(tags, dialect, issues)
    times = _times(tags, issues)
    distance = _measure(tags, "distance", "km", issues)
    gain = _measure(tags, "elevation_gain", "m", issues)
    loss = _measure(tags, "elevation_loss", "m", issues)
    pace = _pace(tags, issues)
    workout_type = singleton(tags, "type", [])
    row = Workout(
        event_id=event.id,
        kind=event.kind,
        pubkey=event.pubkey,
        d=d,
        created_at=event.created_at,
        dialect=dialect,
        title=title,
        workout_type=lowered(workout_type),
        activity=activity,
        activity_raw=activity_raw,
        started_at=times.started_at,
        ended_at=times.ended_at,
        start_raw=times.start_raw,
        end_raw=times.end_raw,
        duration_s=times.duration_s,
        duration_raw=times.duration_raw,
        completed=_completed(tags, issues),
        rounds_completed=read_number(tags, "rounds_completed", issues),
        interval_s=read_duration(tags, "interval", issues),
        template=_template(tags, issues),
        notes=event.content,
        client=client(tags),
        source=stripped(singleton(tags, "source", issues)),
        hashtags=hashtags(tags),
        distance_m=distance.value,
        distance_raw=distance.raw,
        distance_unit=distance.unit,
        elevation_gain_m=gain.value,
        elevation_loss_m=loss.value,
        calories=read_number(tags, "calories", issues),
        steps=read_number(tags, "steps", issues),
        avg_heart_rate=read_number(tags, "avg_heart_rate", issues),
        max_heart_rate=read_number(tags, "max_heart_rate", issues),
        avg_pace_s_per_km=pace.value,
        avg_pace_raw=pace.raw,
        avg_pace_unit=pace.unit,
        sets=_sets(tags, issues) if dialect == "nip101e" else (),
        splits=read_splits(tags, issues),
        prs=read_claims(tags, issues),
    )
    return row, issues
