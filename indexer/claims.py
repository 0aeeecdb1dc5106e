"""A record's ``pr`` tags (personal-record claims) into
:class:`~indexer.model.PersonalRecordClaim` rows.

Three or more elements are NIP-101e v5's separate ``coord, metric, value``; one element
with commas is ``"<coord>,<metric>,<value>"``, split from the right so a relay hint in the
coordinate survives. ``raw`` is the elements after ``pr`` joined with ``,``. The coordinate
should name an exercise (kind 33401); the value is a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.address import address_issue, parse_address
from indexer.model import Issue, PersonalRecordClaim
from indexer.tags import lowered
from indexer.units import parse_number
from relay.nostr.kinds import EXERCISE

__all__ = ["read_claims"]


def read_claims(
    tags: Sequence[Sequence[str]], issues: list[Issue]
) -> tuple[PersonalRecordClaim, ...]:
    """One claim per ``pr`` tag with a value, in tag order."""
    out: list[PersonalRecordClaim] = []
    for index, tag in enumerate(tags):
        if len(tag) >= 2 and tag[0] == "pr":
            out.append(_claim(tag, index, len(out), issues))
    return tuple(out)


def _claim(
    tag: Sequence[str], index: int, position: int, issues: list[Issue]
) -> PersonalRecordClaim:
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
