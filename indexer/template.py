"""Kind 33402 (workout template) into a :class:`~indexer.model.Template` row.

Decisions:

- identity is ``(pubkey, d)``, ``d`` the first ``d`` value or ``""``; singleton tags: the
  first wins (:mod:`indexer.tags`); ``title`` falls back to ``name``;
- every ``exercise`` tag is one prescribed set, identical tags included (§9.5). Its values
  stay raw (the exercise's format is not known here) minus a trailing set_number found by
  :func:`indexer.sets.split_set_number`; without one the set is numbered by the running
  count of its coordinate (1, 2, 3 …). ``group_number`` is the set_number, so equal numbers
  on different exercises form one group;
- POWR RN's ``["exercise","33401:<id>","","3","10","60"]`` gives a set with an
  unresolvable address and the three raw values;
- ``rounds`` is a number; ``duration``, ``interval``, ``rest_between_rounds`` and
  ``rest_between_sets`` are durations (seconds, ``MM:SS`` or ``HH:MM:SS``);
- ``type`` and ``difficulty`` are lowercased.
"""

from __future__ import annotations

from indexer.address import AddressKey, address_issue, address_key, parse_address
from indexer.model import Issue, PrescribedSet, Template
from indexer.sets import split_set_number
from indexer.tags import client, hashtags, read_duration, read_number, singleton
from relay.nostr.event import Event

__all__ = ["parse_template"]


def _lower(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().lower() or None


def parse_template(event: Event) -> tuple[Template | None, list[Issue]]:
    """Read a kind 33402 event; the row is always produced, gaps become issues."""
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
    template_type = _lower(singleton(tags, "type", issues))
    if template_type is None:
        issues.append(Issue("missing_type", "no type tag"))

    sets: list[PrescribedSet] = []
    counts: dict[AddressKey, int] = {}
    for index, tag in enumerate(tags):
        if not tag or tag[0] != "exercise":
            continue
        if len(tag) < 2:
            issues.append(Issue("empty_exercise_tag", "exercise tag without a value", index))
            continue
        address = parse_address(tag[1], tag[2] if len(tag) > 2 else None)
        problem = address_issue(address, 33401, index)
        if problem is not None:
            issues.append(problem)
        values, given = split_set_number(tag[3:])
        key = address_key(address)
        counts[key] = counts.get(key, 0) + 1
        number = given if given is not None else counts[key]
        sets.append(
            PrescribedSet(
                position=len(sets),
                tag_index=index,
                exercise=address,
                values_raw=values,
                set_number=number,
                set_number_given=given is not None,
                group_number=number,
            )
        )
    if not sets:
        issues.append(Issue("no_exercises", "template has no exercise tags"))

    row = Template(
        pubkey=event.pubkey,
        d=d or "",
        event_id=event.id,
        created_at=event.created_at,
        title=title,
        template_type=template_type,
        rounds=read_number(tags, "rounds", issues),
        duration_s=read_duration(tags, "duration", issues),
        interval_s=read_duration(tags, "interval", issues),
        rest_between_rounds_s=read_duration(tags, "rest_between_rounds", issues),
        rest_between_sets_s=read_duration(tags, "rest_between_sets", issues),
        difficulty=_lower(singleton(tags, "difficulty", issues)),
        notes=event.content,
        client=client(tags),
        hashtags=hashtags(tags),
        sets=tuple(sets),
    )
    return row, issues
