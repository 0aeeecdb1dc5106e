"""Reading single-valued tags, hashtags and the client tag, the same way for every kind.

The one rule for repeated singleton tags (§9.11): the **first** tag of a name that carries a
value wins, matching NIP-01's choice for ``d``. When a later tag of the same name holds a
different value a ``repeated_tag`` issue points at it, so the disagreement stays visible.
A tag with only a name (``["title"]``) counts as absent.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.model import Hashtag, Issue
from indexer.units import parse_duration, parse_number

__all__ = [
    "client",
    "first_value",
    "hashtags",
    "index_of",
    "read_duration",
    "read_number",
    "singleton",
]

Tags = Sequence[Sequence[str]]


def first_value(tags: Tags, name: str) -> str | None:
    """The value of the first ``name`` tag that has one, else None."""
    for tag in tags:
        if len(tag) >= 2 and tag[0] == name:
            return tag[1]
    return None


def singleton(tags: Tags, name: str, issues: list[Issue]) -> str | None:
    """Like :func:`first_value`, noting later tags of the name that disagree."""
    found: str | None = None
    for index, tag in enumerate(tags):
        if len(tag) < 2 or tag[0] != name:
            continue
        if found is None:
            found = tag[1]
        elif tag[1] != found:
            issues.append(Issue("repeated_tag", f"{name}: kept the first value", index))
    return found


def hashtags(tags: Tags) -> tuple[Hashtag, ...]:
    """``t`` tags, lowercased and stripped for search, first spelling of each kept raw.

    Empty ones are skipped; the same tag in another casing is kept once.
    """
    seen: set[str] = set()
    out: list[Hashtag] = []
    for tag in tags:
        if len(tag) < 2 or tag[0] != "t":
            continue
        normal = tag[1].strip().lower()
        if normal and normal not in seen:
            seen.add(normal)
            out.append(Hashtag(tag=normal, raw=tag[1]))
    return tuple(out)


def client(tags: Tags) -> str | None:
    """The client name: the first element after ``client`` in the first such tag."""
    value = first_value(tags, "client")
    return value if value else None


def index_of(tags: Tags, name: str) -> int | None:
    """The position of the first ``name`` tag that has a value."""
    return next((i for i, t in enumerate(tags) if len(t) >= 2 and t[0] == name), None)


def read_number(tags: Tags, name: str, issues: list[Issue]) -> float | None:
    """The first ``name`` tag as a number; text that is not one is a ``bad_number``."""
    value = singleton(tags, name, issues)
    if value is None or not value.strip():
        return None
    number = parse_number(value)
    if number is None:
        issues.append(Issue("bad_number", f"{name}: {value!r}", index_of(tags, name)))
    return number


def read_duration(tags: Tags, name: str, issues: list[Issue]) -> float | None:
    """The first ``name`` tag as seconds, its third element (if any) being the unit."""
    index = index_of(tags, name)
    value = singleton(tags, name, issues)
    if index is None or value is None or not value.strip():
        return None
    tag = tags[index]
    seconds = parse_duration(value, tag[2] if len(tag) > 2 else None)
    if seconds is None:
        issues.append(Issue("bad_duration", f"{name}: {value!r}", index))
    return seconds


def lowered(value: str | None) -> str | None:
    """Trimmed and lowercased; None when nothing is left."""
    if value is None:
        return None
    return value.strip().lower() or None


def stripped(value: str | None) -> str | None:
    """Trimmed; None when nothing is left."""
    if value is None:
        return None
    return value.strip() or None
