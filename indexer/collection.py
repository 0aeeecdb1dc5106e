"""NIP-51 sets (30003 bookmark sets, 30004 curation sets) that gather exercises or templates.

powr_web keeps its libraries as 30003 (``title``, ``description``, ``a`` tags) and POWR RN
its Packs as 30004 (``name``, ``about`` or content, ``a`` tags with relay hints). A set is
a fitness list only when at least one ``a`` tag names a kind 33401 or 33402; otherwise the
result is ``(None, [])``. Members are every ``a`` tag in order, fitness or not (a
collection may hold other sets), each parsed with its relay hint from the third element.
``title`` falls back to ``name``; ``description`` to ``about``, then to the content; blank
text is None. Singleton tags: the first wins (:mod:`indexer.tags`).
"""

from __future__ import annotations

from indexer.address import parse_address
from indexer.model import Address, FitnessList, Issue, ListItem
from indexer.tags import forget_tags, singleton
from relay.nostr.event import Event
from relay.nostr.kinds import LIST_MEMBER_KINDS

__all__ = ["parse_list"]


def _text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value


def parse_list(event: Event) -> tuple[FitnessList | None, list[Issue]]:
    """Read a 30003/30004 set; None when it holds no exercise or template."""
    forget_tags()
    members: list[tuple[int, Address]] = []
    for index, tag in enumerate(event.tags):
        if len(tag) >= 2 and tag[0] == "a":
            members.append((index, parse_address(tag[1], tag[2] if len(tag) > 2 else None)))
    if not any(a.kind in LIST_MEMBER_KINDS for _, a in members):
        return None, []
    issues: list[Issue] = []
    for index, address in members:
        if not address.resolvable:
            issues.append(Issue("malformed_coordinate", repr(address.raw), index))
    tags = event.tags
    d = singleton(tags, "d", issues)
    if d is None:
        issues.append(Issue("missing_d", "no d tag; indexed under d ''"))
    title = _text(singleton(tags, "title", issues)) or _text(singleton(tags, "name", issues))
    description = (
        _text(singleton(tags, "description", issues))
        or _text(singleton(tags, "about", issues))
        or _text(event.content)
    )
    row = FitnessList(
        kind=event.kind,
        pubkey=event.pubkey,
        d=d or "",
        event_id=event.id,
        created_at=event.created_at,
        title=title,
        description=description,
        items=tuple(ListItem(position=i, member=a) for i, (_, a) in enumerate(members)),
    )
    return row, issues
