"""Workout records (kind 1301 in both dialects, legacy 33403) into Workout / NonWorkout rows.

Telling a kind 1301 apart (§5b, §9.1, §9.13), first match wins:

1. an ``exercise`` value that is a coordinate (three parts, integer kind, 64-hex pubkey,
   Amethyst's test) or starts with ``33401:`` (POWR RN's local references): ``nip101e``;
2. an ``exercise`` value that is an activity word (``running``, ``run`` …): ``runstr``;
3. an ``rcpt`` tag or RFC-2822 headers in ``content`` (the nostr-mail e-mail kind):
   :class:`~indexer.model.NonWorkout` with reason ``email``;
4. a RUNSTR tag (``distance``, ``split``, ``split_pace``, ``avg_pace``, ``elevation_*``,
   ``workout_start_time``, ``steps``, ``calories``, heart rates, ``data_points``,
   ``recording_pauses``, ``source``, the legacy ``workout`` title), ``client`` ``RUNSTR``
   or a clock-form ``duration``: ``runstr``;
5. NIP-101e structure without sets (``template``, an ``a`` tag naming a 33402, or ``start``
   with ``end`` or ``completed``): ``nip101e``;
6. otherwise a NonWorkout with reason ``no_workout_tags``. Its tags are never read as sets.

Kind 33403 exists only as POWR's early record kind, so it is always ``nip101e``.

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
- ``pr``: three or more elements are v5's separate ``coord, metric, value``; one element
  with commas is ``"<coord>,<metric>,<value>"`` (split from the right, so a relay hint in
  the coordinate survives). ``raw`` is the elements after ``pr`` joined with ``,``;
- distance without a unit is kilometres (RUNSTR's default), elevation without one metres;
- splits: ``["split", n, elapsed]`` is the cumulative time, ``["split_pace", n, s]`` that
  split's pace, both merged by split number; the older ``["split", n, "05:32", "1 km"]`` is
  read as that split's own time over the labelled distance, so it fills ``pace_s`` (not
  ``elapsed_s``) and keeps the label in ``distance_raw``. A repeated value for the same
  split number keeps the first (``duplicate_split``); a split of any other shape (no
  number, or more than four elements) is a ``bad_split``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.address import address_issue, parse_address
from indexer.model import (
    Address,
    Issue,
    NonWorkout,
    PerformedSet,
    PersonalRecordClaim,
    Split,
    Workout,
)
from indexer.sets import read_set_tags
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
from indexer.units import (
    distance_to_m,
    parse_bool,
    parse_count,
    parse_duration,
    parse_number,
    parse_pace,
    parse_timestamp,
)
from relay.nostr.event import Event
from relay.nostr.kinds import EXERCISE, WORKOUT_RECORD_LEGACY, WORKOUT_TEMPLATE

__all__ = ["detect_dialect", "is_set_reference", "parse_record"]

Tags = Sequence[Sequence[str]]


_VERB = re.compile(r"[A-Za-z][A-Za-z _-]{0,63}\Z")
_VERB_ACTIVITY = {
    "run": "running",
    "walk": "walking",
    "cycle": "cycling",
    "bike": "cycling",
    "hike": "hiking",
    "swim": "swimming",
    "row": "rowing",
}
_RUNSTR_TAGS = frozenset(
    {
        "distance",
        "split",
        "split_pace",
        "avg_pace",
        "elevation_gain",
        "elevation_loss",
        "workout_start_time",
        "steps",
        "calories",
        "avg_heart_rate",
        "max_heart_rate",
        "data_points",
        "recording_pauses",
        "source",
        "workout",
    }
)
_EMAIL_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type"}
)
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]")


def is_set_reference(value: str) -> bool:
    """Whether an ``exercise`` value names an exercise (a set) rather than an activity."""
    if value.strip().startswith(f"{EXERCISE}:"):
        return True
    address = parse_address(value)
    return address.kind is not None and address.pubkey is not None


def _is_email(tags: Tags, content: str) -> bool:
    if any(t and t[0] == "rcpt" for t in tags):
        return True
    names: set[str] = set()
    for line in content[:4000].splitlines():
        if not line.strip():
            break
        match = _HEADER.match(line)
        if match:
            names.add(match.group(1).lower())
        elif not line[:1].isspace():
            break
    return len(names & _EMAIL_HEADERS) >= 2


def _exercise_values(tags: Tags) -> list[str]:
    return [t[1] for t in tags if len(t) >= 2 and t[0] == "exercise"]


def detect_dialect(event: Event) -> str:
    """``nip101e``, ``runstr``, or the NonWorkout reason (``email``, ``no_workout_tags``)."""
    tags = event.tags
    if event.kind == WORKOUT_RECORD_LEGACY:
        return "nip101e"
    exercises = _exercise_values(tags)
    if any(is_set_reference(v) for v in exercises):
        return "nip101e"
    if any(_VERB.match(v.strip()) for v in exercises):
        return "runstr"
    if _is_email(tags, event.content):
        return "email"
    names = {t[0] for t in tags if t}
    duration = first_value(tags, "duration")
    runstr_marks = (
        bool(names & _RUNSTR_TAGS)
        or (client(tags) or "").strip().lower() == "runstr"
        or (duration is not None and ":" in duration)
    )
    if runstr_marks:
        return "runstr"
    if "template" in names or _template_from_a(tags) is not None:
        return "nip101e"
    if "start" in names and ("end" in names or "completed" in names):
        return "nip101e"
    return "no_workout_tags"


def _template_from_a(tags: Tags) -> tuple[int, Address] | None:
    for index, tag in enumerate(tags):
        if len(tag) >= 2 and tag[0] == "a":
            address = parse_address(tag[1], tag[2] if len(tag) > 2 else None)
            if address.kind == WORKOUT_TEMPLATE:
                return index, address
    return None


def _template(tags: Tags, issues: list[Issue]) -> Address | None:
    index = index_of(tags, "template")
    found: tuple[int, Address] | None = None
    if index is not None:
        tag = tags[index]
        found = index, parse_address(tag[1], tag[2] if len(tag) > 2 else None)
    else:
        found = _template_from_a(tags)
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


def _pr(tag: Sequence[str], index: int, position: int, issues: list[Issue]) -> PersonalRecordClaim:
    values = list(tag[1:])
    relay: str | None = None
    metric: str | None = None
    value_raw: str | None = None
    if len(values) >= 3:
        coord, metric, value_raw = values[0], values[1], values[2]
    elif "," in values[0]:
        coord, *rest = values[0].rsplit(",", 2)
        metric = rest[0]
        value_raw = rest[1] if len(rest) == 2 else None
        relay = values[1] if len(values) == 2 else None
    else:
        coord = values[0]
        metric = values[1] if len(values) == 2 else None
    address = parse_address(coord, relay)
    problem = address_issue(address, EXERCISE, index)
    if problem is not None:
        issues.append(problem)
    value = parse_number(value_raw)
    if value_raw is not None and value_raw.strip() and value is None:
        issues.append(Issue("bad_number", f"pr value: {value_raw!r}", index))
    return PersonalRecordClaim(
        position=position,
        exercise=address,
        metric=lowered(metric),
        value=value,
        raw=",".join(values),
    )


def _prs(tags: Tags, issues: list[Issue]) -> tuple[PersonalRecordClaim, ...]:
    out: list[PersonalRecordClaim] = []
    for index, tag in enumerate(tags):
        if len(tag) >= 2 and tag[0] == "pr":
            out.append(_pr(tag, index, len(out), issues))
    return tuple(out)


def _splits(tags: Tags, issues: list[Issue]) -> tuple[Split, ...]:
    found: dict[int, dict[str, float | str | None]] = {}
    for index, tag in enumerate(tags):
        if not tag or tag[0] not in ("split", "split_pace"):
            continue
        number = parse_count(tag[1]) if 3 <= len(tag) <= 4 else None
        if number is None:
            issues.append(Issue("bad_split", repr(list(tag)), index))
            continue
        fields: dict[str, float | str | None]
        seconds = parse_duration(tag[2])
        if seconds is None:
            issues.append(Issue("bad_duration", f"{tag[0]}: {tag[2]!r}", index))
        if tag[0] == "split_pace":
            fields = {"pace_s": seconds}
        elif len(tag) >= 4:
            fields = {"pace_s": seconds, "distance_raw": tag[3]}
        else:
            fields = {"elapsed_s": seconds}
        entry = found.setdefault(number, {})
        for name, value in fields.items():
            if name in entry:
                issues.append(Issue("duplicate_split", f"split {number}: {name}", index))
            else:
                entry[name] = value
    return tuple(
        Split(
            number=number,
            elapsed_s=_as_float(entry.get("elapsed_s")),
            pace_s=_as_float(entry.get("pace_s")),
            distance_raw=_as_str(entry.get("distance_raw")),
        )
        for number, entry in sorted(found.items())
    )


def _as_float(value: float | str | None) -> float | None:
    return value if isinstance(value, float) else None


def _as_str(value: float | str | None) -> str | None:
    return value if isinstance(value, str) else None


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
        raw = next((v for v in _exercise_values(tags) if _VERB.match(v.strip())), None)
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
        splits=_splits(tags, issues),
        prs=_prs(tags, issues),
    )
    return row, issues
