"""RUNSTR's ``split`` and ``split_pace`` tags into :class:`~indexer.model.Split` rows.

``["split", n, elapsed]`` is the cumulative time, ``["split_pace", n, s]`` that split's
pace, both merged by split number. The older ``["split", n, "05:32", "1 km"]`` is read as
that split's own time over the labelled distance, so it fills ``pace_s`` (not
``elapsed_s``) and keeps the label in ``distance_raw``. A repeated value for the same split
number keeps the first (``duplicate_split``); a split of any other shape (no number, or
more than four elements) is a ``bad_split``.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.model import Issue, Split
from indexer.units import parse_count, parse_duration

__all__ = ["read_splits"]


def read_splits(tags: Sequence[Sequence[str]], issues: list[Issue]) -> tuple[Split, ...]:
    """The splits of a record, ordered by split number."""
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
