"""Kind 33401 (exercise template) into an :class:`~indexer.model.Exercise` row.

Decisions:

- identity is ``(pubkey, d)`` with ``d`` the first ``d`` value, ``""`` when there is none;
- repeated singleton tags: the first one wins (see :mod:`indexer.tags`);
- ``title`` falls back to ``name``; ``equipment``, ``difficulty`` and ``type`` are lowercased
  and ``""`` becomes None; ``category`` is kept as written (stripped);
- ``format`` names are lowercased. ``format_units`` gets one unit per format entry: the
  POWR RN key/value form (twice as long, keys equal to the format names) is folded back,
  a set_type unit (``warmup|normal|drop|failure`` in any order) becomes ``enum``, units are
  lowercased and ``""`` becomes None; any other length mismatch is padded or cut and noted;
- ``instructions`` is ``content``, or its ``instructions`` string when content is a JSON
  object holding one;
- ``imeta`` is read in the NIP-92 form (one ``"key value"`` per element) and in the packed
  form (one element, ``"url … m … purpose …"``), where a token that is a known imeta key
  starts a new field. The first value of a key wins.

Nothing here makes the row None: an exercise missing required tags is still indexed and
each gap is an issue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from indexer.model import Exercise, Issue, Media
from indexer.tags import forget_tags, hashtags, lowered, singleton, stripped
from indexer.units import INT32_MAX, SET_TYPES
from relay.nostr.event import Event

__all__ = ["IMETA_KEYS", "normalise_format_units", "parse_exercise", "parse_imeta"]

IMETA_KEYS = frozenset(
    {
        "url",
        "m",
        "dim",
        "alt",
        "x",
        "ox",
        "blurhash",
        "thumb",
        "image",
        "summary",
        "fallback",
        "service",
        "size",
        "magnet",
        "i",
        "duration",
        "bitrate",
        "purpose",
        "context",
    }
)
_DIM = re.compile(r"([0-9]{1,10})[xX]([0-9]{1,10})\Z")


def _unit(value: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    parts = {p.strip() for p in text.split("|")}
    if text == "enum" or (len(parts) > 1 and parts <= SET_TYPES):
        return "enum"
    return text


def normalise_format_units(
    format: Sequence[str], raw: Sequence[str]
) -> tuple[tuple[str | None, ...], str | None]:
    """One normalised unit per format entry, and a note when the lengths did not fit."""
    if not format:
        return (), None
    if len(raw) == 2 * len(format):
        keys = [k.strip().lower() for k in raw[0::2]]
        if sorted(keys) == sorted(format):
            by_key = dict(zip(keys, raw[1::2], strict=True))
            return tuple(_unit(by_key[name]) for name in format), None
    units = [_unit(u) for u in raw[: len(format)]]
    units += [None] * (len(format) - len(units))
    note = None
    if len(raw) != len(format):
        note = f"format has {len(format)} entries, format_units {len(raw)}"
    return tuple(units), note


def _imeta_fields(values: Sequence[str]) -> list[tuple[str, str]]:
    if len(values) == 1:
        fields: list[tuple[str, str]] = []
        for token in values[0].split():
            if token in IMETA_KEYS:
                fields.append((token, ""))
            elif fields:
                key, text = fields[-1]
                fields[-1] = (key, f"{text} {token}" if text else token)
        return fields
    out: list[tuple[str, str]] = []
    for value in values:
        key, _, text = value.strip().partition(" ")
        out.append((key, text.strip()))
    return out


def parse_imeta(values: Sequence[str]) -> Media:
    """One ``imeta`` tag's elements (after the name), in either form, as a Media row."""
    found: dict[str, str] = {}
    for key, text in _imeta_fields(values):
        found.setdefault(key, text)
    width = height = None
    match = _DIM.match(found.get("dim", "").strip())
    if match:
        w, h = int(match.group(1)), int(match.group(2))
        if w <= INT32_MAX and h <= INT32_MAX:
            width, height = w, h
    return Media(
        url=found.get("url") or None,
        mime_type=found.get("m") or None,
        width=width,
        height=height,
        alt=found.get("alt") or None,
        raw=";".join(values),
    )


def _instructions(content: str) -> str:
    if not content.lstrip().startswith("{"):
        return content
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return content
    if isinstance(data, dict):
        value = data.get("instructions")
        if isinstance(value, str):
            return value
    return content


def parse_exercise(event: Event) -> tuple[Exercise | None, list[Issue]]:
    """Read a kind 33401 event; the row is always produced, gaps become issues."""
    forget_tags()
    issues: list[Issue] = []
    tags = event.tags
    d = singleton(tags, "d", issues)
    if d is None:
        issues.append(Issue("missing_d", "no d tag; indexed under d ''"))
    title = singleton(tags, "title", issues)
    if title is None:
        title = singleton(tags, "name", issues)
    if title is None:
        issues.append(Issue("missing_title", "no title or name tag"))

    format_index = next((i for i, t in enumerate(tags) if t and t[0] == "format"), None)
    units_index = next((i for i, t in enumerate(tags) if t and t[0] == "format_units"), None)
    format: tuple[str, ...] = ()
    if format_index is None:
        issues.append(Issue("missing_format", "no format tag"))
    else:
        format = tuple(f.strip().lower() for f in tags[format_index][1:])
    units_raw = tuple(tags[units_index][1:]) if units_index is not None else ()
    if units_index is None:
        issues.append(Issue("missing_format_units", "no format_units tag"))
    units, note = normalise_format_units(format, units_raw)
    if note is not None:
        issues.append(Issue("format_units_length", note, units_index))

    equipment = singleton(tags, "equipment", issues)
    if equipment is None:
        issues.append(Issue("missing_equipment", "no equipment tag"))

    media: list[Media] = []
    for index, tag in enumerate(tags):
        if tag and tag[0] == "imeta":
            item = parse_imeta(tag[1:])
            if item.url is None:
                issues.append(Issue("imeta_without_url", "imeta has no url", index))
            media.append(item)

    row = Exercise(
        pubkey=event.pubkey,
        d=d or "",
        event_id=event.id,
        created_at=event.created_at,
        title=title,
        equipment=lowered(equipment),
        difficulty=lowered(singleton(tags, "difficulty", issues)),
        format=format,
        format_units=units,
        format_units_raw=units_raw,
        instructions=_instructions(event.content),
        exercise_type=lowered(singleton(tags, "type", issues)),
        category=stripped(singleton(tags, "category", issues)),
        hashtags=hashtags(tags),
        media=tuple(media),
    )
    return row, issues
