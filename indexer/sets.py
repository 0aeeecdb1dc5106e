"""Reading the values of one ``exercise`` tag: the trailing set_number and the set values.

An ``exercise`` tag is ``["exercise", coord, relay, v1 … vN, set_number?]``. The values are
written in the exercise's ``format`` order; the exercise may not be known yet, so the
parsers keep them raw and these functions read them either way.

set_number (v4) detection, for ``values`` = the elements after coord and relay:

- with a known format: the element right after the format's N values when it is the last
  one and an unsigned integer; or, when POWR left out undefined values and the format ends
  in ``set_type``, an unsigned integer right after a set_type keyword at the end;
- without one (the parsers' case): an unsigned integer that follows a set_type keyword at the
  end, or that is the fifth and last value (one past the spec's default four).

"Unsigned integer" means ASCII digits only, at most 2^31-1. Anything else stays a value.

Value mapping: through the format when known (``mapped_by="format"``), else the spec's
default ``weight,reps,rpe,set_type`` (``"default"``). When a set_type keyword sits somewhere
other than where the format puts set_type (POWR RN leaves out an undefined rpe, so set_type
lands one slot early) the keyword anchors the mapping: the values before it fill the fields
before set_type in order, the values after it the fields after (``"keywords"``). A format
without set_type still takes a keyword found among the values as the set_type.

Value rules: ``""`` and non-numeric text give None (``weight_raw`` keeps the text), ``"0"``
weight is 0 kg (bodyweight), negative weights stay negative (assisted), weight units follow
``format_units`` (none means kg).

A blank weight (``""``, how v1 to v3 write bodyweight; v4 writes ``"0"``) depends on what it is
a weight of: on a performed set of a resolved exercise whose equipment is ``bodyweight`` it is
read as ``"0"``; in a template (a prescribed set) it means "fill in at workout time", and on
other equipment or an unresolved exercise "not recorded", so it stays None. The caller passes
the resolved exercise's equipment and whether the set is prescribed, and maps again whenever
either changes (the exercise arrives, is replaced or removed).

A ``reps`` field whose unit is a time unit (``seconds``) holds a duration (§9.6) and fills
``duration_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexer.address import AddressKey, address_issue, address_key, parse_address
from indexer.model import Address, Issue, SetValues
from indexer.units import (
    distance_to_m,
    duration_unit_factor,
    normalise_set_type,
    parse_count,
    parse_duration,
    parse_number,
    weight_to_kg,
)
from relay.nostr.kinds import EXERCISE

__all__ = ["BODYWEIGHT", "DEFAULT_FORMAT", "blank_weight_is_zero", "map_set", "split_set_number"]

DEFAULT_FORMAT: tuple[str, ...] = ("weight", "reps", "rpe", "set_type")
BODYWEIGHT = "bodyweight"
"""The ``equipment`` value (lowercased) whose blank weights are 0 kg on performed sets."""

_HEART_RATE = frozenset({"heartrate", "heart_rate", "hr"})
_DURATION = frozenset({"duration", "time"})


def _is_keyword(value: str) -> bool:
    return normalise_set_type(value) is not None


def _is_time_unit(unit: str | None) -> bool:
    return bool(unit and unit.strip()) and duration_unit_factor(unit) is not None


def split_set_number(
    values: Sequence[str], format: Sequence[str] | None = None
) -> tuple[tuple[str, ...], int | None]:
    """``values`` without a trailing set_number, and that number (None when there is none)."""
    items = tuple(values)
    if not items:
        return items, None
    number = parse_count(items[-1])
    if number is None:
        return items, None
    after_keyword = len(items) >= 2 and _is_keyword(items[-2])
    if format:
        fields = [f.strip().lower() for f in format]
        given = len(items) == len(fields) + 1 or (
            after_keyword and fields[-1] == "set_type" and len(items) <= len(fields)
        )
    else:
        given = after_keyword or len(items) == len(DEFAULT_FORMAT) + 1
    return (items[:-1], number) if given else (items, None)


def _pairs(values: Sequence[str], fields: Sequence[str]) -> tuple[list[tuple[str, int]], bool]:
    """(value, field index) pairs and whether a misplaced keyword decided them."""
    positional = [(v, i) for i, v in enumerate(values) if i < len(fields)]
    keyword_at = next((i for i, v in enumerate(values) if _is_keyword(v)), None)
    if keyword_at is None:
        return positional, False
    if "set_type" not in fields:
        pairs = [(v, i) for v, i in positional if i != keyword_at]
        return [*pairs, (values[keyword_at], -1)], True
    expected = fields.index("set_type")
    if keyword_at == expected or (expected < len(values) and _is_keyword(values[expected])):
        return positional, False
    pairs = [(values[i], i) for i in range(min(keyword_at, expected))]
    pairs.append((values[keyword_at], expected))
    for offset, value in enumerate(values[keyword_at + 1 :]):
        field = expected + 1 + offset
        if field < len(fields):
            pairs.append((value, field))
    return pairs, True


def blank_weight_is_zero(equipment: str | None, prescribed: bool) -> bool:
    """Whether a blank weight means 0 kg: a performed set of a bodyweight exercise."""
    return not prescribed and equipment is not None and equipment.strip().lower() == BODYWEIGHT


def map_set(
    values_raw: Sequence[str],
    format: Sequence[str] | None = None,
    format_units: Sequence[str | None] | None = None,
    *,
    equipment: str | None = None,
    prescribed: bool = False,
) -> SetValues:
    """Map one set's raw values (set_number already removed) to research units.

    ``equipment`` is the resolved exercise's (None when unresolved) and ``prescribed`` says
    the set is a template's; together they decide what a blank weight means.
    """
    if not values_raw:
        return SetValues()
    zero_blank = blank_weight_is_zero(equipment, prescribed)
    fields = [f.strip().lower() for f in format] if format else list(DEFAULT_FORMAT)
    units: Sequence[str | None] = (format_units or ()) if format else ()
    pairs, by_keyword = _pairs(values_raw, fields)
    nums: dict[str, float | None] = {}
    texts: dict[str, str | None] = {}
    for value, index in pairs:
        name = "set_type" if index < 0 else fields[index]
        unit = units[index] if 0 <= index < len(units) else None
        if name == "weight":
            texts.setdefault("weight_raw", value)
            texts.setdefault("weight_unit", unit or None)
            number = 0.0 if zero_blank and not value.strip() else parse_number(value)
            nums.setdefault("weight_kg", None if number is None else weight_to_kg(number, unit))
        elif name == "reps" and _is_time_unit(unit):
            nums.setdefault("duration_s", parse_duration(value, unit))
        elif name in ("reps", "rpe"):
            nums.setdefault(name, parse_number(value))
        elif name == "set_type":
            texts.setdefault("set_type_raw", value)
            texts.setdefault("set_type", normalise_set_type(value))
        elif name in _DURATION:
            nums.setdefault("duration_s", parse_duration(value, unit))
        elif name == "distance":
            number = parse_number(value)
            nums.setdefault("distance_m", None if number is None else distance_to_m(number, unit))
        elif name in _HEART_RATE:
            nums.setdefault("heart_rate", parse_number(value))
    return SetValues(
        weight_kg=nums.get("weight_kg"),
        weight_raw=texts.get("weight_raw"),
        weight_unit=texts.get("weight_unit"),
        reps=nums.get("reps"),
        rpe=nums.get("rpe"),
        set_type=texts.get("set_type"),
        set_type_raw=texts.get("set_type_raw"),
        duration_s=nums.get("duration_s"),
        distance_m=nums.get("distance_m"),
        heart_rate=nums.get("heart_rate"),
        mapped_by="keywords" if by_keyword else ("format" if format else "default"),
    )


@dataclass(frozen=True, slots=True)
class SetTag:
    """One ``exercise`` tag of a template or a record, read as a set."""

    tag_index: int
    exercise: Address
    values_raw: tuple[str, ...]
    set_number: int
    """The tag's set_number when given, else the count of this coordinate so far (1, 2 …)."""
    set_number_given: bool


def read_set_tags(tags: Sequence[Sequence[str]], issues: list[Issue]) -> list[SetTag]:
    """Every ``exercise`` tag in order, one set each (identical tags are never merged)."""
    sets: list[SetTag] = []
    counts: dict[AddressKey, int] = {}
    for index, tag in enumerate(tags):
        if not tag or tag[0] != "exercise":
            continue
        if len(tag) < 2:
            issues.append(Issue("empty_exercise_tag", "exercise tag without a value", index))
            continue
        address = parse_address(tag[1], tag[2] if len(tag) > 2 else None)
        problem = address_issue(address, EXERCISE, index)
        if problem is not None:
            issues.append(problem)
        values, given = split_set_number(tag[3:])
        key = address_key(address)
        counts[key] = counts.get(key, 0) + 1
        number = given if given is not None else counts[key]
        sets.append(SetTag(index, address, values, number, given is not None))
    return sets
