"""Which dialect a workout record is written in, or why it is not a workout at all.

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
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from indexer.address import parse_address
from indexer.model import Address
from indexer.tags import client, first_value, forget_tags
from relay.nostr.event import Event
from relay.nostr.kinds import EXERCISE, WORKOUT_RECORD_LEGACY, WORKOUT_TEMPLATE

__all__ = [
    "detect_dialect",
    "find_activity_verb",
    "find_template_a",
    "is_activity_verb",
    "is_set_reference",
]

Tags = Sequence[Sequence[str]]

_VERB = re.compile(r"[A-Za-z][A-Za-z _-]{0,63}\Z")
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


def is_activity_verb(value: str) -> bool:
    """Whether an ``exercise`` value is a RUNSTR activity word (``running``, ``run`` …)."""
    return _VERB.match(value.strip()) is not None


def find_activity_verb(tags: Tags) -> str | None:
    """The first ``exercise`` value that is an activity word, as written."""
    return next((v for v in _exercise_values(tags) if is_activity_verb(v)), None)


def find_template_a(tags: Tags) -> tuple[int, Address] | None:
    """The first ``a`` tag naming a kind 33402 (NIP-101e v5's template reference), with its
    position."""
    for index, tag in enumerate(tags):
        if len(tag) >= 2 and tag[0] == "a":
            address = parse_address(tag[1], tag[2] if len(tag) > 2 else None)
            if address.kind == WORKOUT_TEMPLATE:
                return index, address
    return None


def _exercise_values(tags: Tags) -> list[str]:
    return [t[1] for t in tags if len(t) >= 2 and t[0] == "exercise"]


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


def detect_dialect(event: Event) -> str:
    """``nip101e``, ``runstr``, or the NonWorkout reason (``email``, ``no_workout_tags``)."""
    forget_tags()
    tags = event.tags
    if event.kind == WORKOUT_RECORD_LEGACY:
        return "nip101e"
    exercises = _exercise_values(tags)
    if any(is_set_reference(v) for v in exercises):
        return "nip101e"
    if any(is_activity_verb(v) for v in exercises):
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
    if "template" in names or find_template_a(tags) is not None:
        return "nip101e"
    if "start" in names and ("end" in names or "completed" in names):
        return "nip101e"
    return "no_workout_tags"
