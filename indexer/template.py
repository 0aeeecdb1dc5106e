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

from indexer.model import Issue, PrescribedSet, Template
from indexer.sets import read_set_tags
from indexer.tags import (
    client,
    forget_tags,
    hashtags,
    lowered,
    read_duration,
    read_number,
    singleton,
)
from relay.nostr.event import Event

__all__ = ["parse_template"]


def parse_template(event: Event) -> tuple[Template | None, list[Issue]]:
    """Read a kind 33402 event; the row is always produced, gaps become issues."""
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
    template_type = lowered(singleton(tags, "type", issues))
    if template_type is None:
        issues.append(Issue("missing_type", "no type tag"))

    sets = [
        PrescribedSet(
            position=position,
            tag_index=s.tag_index,
            exercise=s.exercise,
            values_raw=s.values_raw,
            set_number=s.set_number,
            set_number_given=s.set_number_given,
            group_number=s.set_number,
        )
        for position, s in enumerate(read_set_tags(tags, issues))
    ]
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
        difficulty=lowered(singleton(tags, "difficulty", issues)),
        notes=event.content,
        client=client(tags),
        hashtags=hashtags(tags),
        sets=tuple(sets),
    )
    return row, issues
