"""Reading single-valued tags, hashtags and the client tag, the same way for every kind.

The one rule for repeated singleton tags (§9.11): the **first** tag of a name that carries a
value wins, matching NIP-01's choice for ``d``. When a later tag of the same name holds a
different value a ``repeated_tag`` issue points at it, so the disagreement stays visible.
A tag with only a name (``["title"]``) counts as absent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from indexer.model import Hashtag, Issue
from indexer.units import parse_duration, parse_number

__all__ = [
    "client",
    "first_value",
    "forget_tags",
    "hashtags",
    "index_of",
    "read_duration",
    "read_number",
    "singleton",
]

Tags = Sequence[Sequence[str]]


class _TagIndex(threading.local):
    """Positions of the tags that carry a value, by name, for the last list of tags read.

    A parser asks for a dozen names of one event's tags in a row; indexing them once turns
    each question from a scan of every tag into a lookup. Only the most recent list is
    kept (by identity and length; parsers never change the tags they read), one per thread.
    """

    def __init__(self) -> None:
        self._tags: Tags | None = None
        self._size = -1
        self._by_name: dict[str, list[int]] = {}

    def forget(self) -> None:
        self._tags, self._size, self._by_name = None, -1, {}

    def positions(self, tags: Tags, name: str) -> Sequence[int]:
        if tags is not self._tags or len(tags) != self._size:
            by_name: dict[str, list[int]] = {}
            for index, tag in enumerate(tags):
                if len(tag) >= 2:
                    by_name.setdefault(tag[0], []).append(index)
            self._tags, self._size, self._by_name = tags, len(tags), by_name
        return self._by_name.get(name, ())


_INDEX = _TagIndex()


def forget_tags() -> None:
    """Drop the index of the last tags read: each parser's entry point calls it, so an
    event's tags are indexed afresh even when a list is reused with other contents."""
    _INDEX.forget()


def first_value(tags: Tags, name: str) -> str | None:
    """The value of the first ``name`` tag that has one, else None."""
    positions = _INDEX.positions(tags, name)
    return tags[positions[0]][1] if positions else None


def singleton(tags: Tags, name: str, issues: list[Issue]) -> str | None:
    """Like :func:`first_value`, noting later tags of the name that disagree."""
    positions = _INDEX.positions(tags, name)
    if not positions:
        return None
    found = tags[positions[0]][1]
    for index in positions[1:]:
        if tags[index][1] != found:
            issues.append(Issue("repeated_tag", f"{name}: kept the first value", index))
    return found


def hashtags(tags: Tags) -> tuple[Hashtag, ...]:
    """``t`` tags, lowercased and stripped for search, first spelling of each kept raw.

    Empty ones are skipped; the same tag in another casing is kept once.
    """
    seen: set[str] = set()
    out: list[Hashtag] = []
    for index in _INDEX.positions(tags, "t"):
        tag = tags[index]
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
    positions = _INDEX.positions(tags, name)
    return positions[0] if positions else None


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
