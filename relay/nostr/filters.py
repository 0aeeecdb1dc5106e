"""NIP-01 filters: parsing with limits, and the reference matcher.

:func:`matches` is the obviously-correct definition the SQL built by
:mod:`relay.storage.sqlfilter` is tested against, and what live subscriptions run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from relay.nostr.errors import NostrError
from relay.nostr.event import MAX_KIND, MAX_TIMESTAMP, Event, is_hex64
from relay.nostr.limits import Limits

__all__ = ["Filter", "matches", "matches_any", "parse_filter"]

_TAG_KEY = re.compile(r"#[A-Za-z]\Z")


@dataclass(frozen=True, slots=True)
class Filter:
    """One parsed filter. A field that is None places no condition; an empty set matches nothing.

    ``tags`` maps a single tag letter to the accepted values; several letters are AND-ed and
    the values within one letter OR-ed. ``limit`` is the client's limit, already capped.
    """

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: tuple[tuple[str, frozenset[str]], ...] = ()
    since: int | None = None
    until: int | None = None
    limit: int | None = None


def _strings(key: str, value: object, limits: Limits) -> list[str]:
    if not isinstance(value, list):
        raise NostrError("invalid", f"filter field {key!r} must be an array")
    if len(value) > limits.max_filter_values:
        raise NostrError(
            "invalid", f"filter field {key!r} has more than {limits.max_filter_values} values"
        )
    for item in value:
        if not isinstance(item, str):
            raise NostrError("invalid", f"filter field {key!r} must hold strings")
    return value


def _hexes(key: str, value: object, limits: Limits) -> frozenset[str]:
    items = _strings(key, value, limits)
    for item in items:
        if not is_hex64(item):
            raise NostrError("invalid", f"filter field {key!r} must hold 64 lowercase hex strings")
    return frozenset(items)


def _integer(key: str, value: object, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NostrError("invalid", f"filter field {key!r} must be an integer")
    if not 0 <= value <= upper:
        raise NostrError("invalid", f"filter field {key!r} must be between 0 and {upper}")
    return value


def parse_filter(raw: object, limits: Limits) -> Filter:
    """Turn one JSON filter object into a :class:`Filter`.

    Raises:
        NostrError: ``invalid:`` for a wrong shape, ``unsupported:`` for a field the relay
        does not implement (so a filter is never silently widened).
    """
    if not isinstance(raw, Mapping):
        raise NostrError("invalid", "a filter must be a JSON object")
    ids = authors = None
    kinds: frozenset[int] | None = None
    since = until = limit = None
    tags: dict[str, frozenset[str]] = {}
    for key, value in raw.items():
        if key == "ids":
            ids = _hexes(key, value, limits)
        elif key == "authors":
            authors = _hexes(key, value, limits)
        elif key == "kinds":
            if not isinstance(value, list):
                raise NostrError("invalid", "filter field 'kinds' must be an array")
            if len(value) > limits.max_filter_values:
                raise NostrError(
                    "invalid",
                    f"filter field 'kinds' has more than {limits.max_filter_values} values",
                )
            kinds = frozenset(_integer("kinds", k, MAX_KIND) for k in value)
        elif key == "since":
            since = _integer(key, value, MAX_TIMESTAMP)
        elif key == "until":
            until = _integer(key, value, MAX_TIMESTAMP)
        elif key == "limit":
            limit = min(_integer(key, value, MAX_TIMESTAMP), limits.max_limit)
        elif _TAG_KEY.match(key):
            tags[key[1]] = frozenset(_strings(key, value, limits))
        elif key.startswith("#"):
            raise NostrError(
                "unsupported", f"tag filter {key!r}: only single-letter tags are indexed"
            )
        else:
            raise NostrError("unsupported", f"filter field {key!r} is not supported")
    return Filter(
        ids=ids,
        authors=authors,
        kinds=kinds,
        tags=tuple(sorted(tags.items())),
        since=since,
        until=until,
        limit=limit,
    )


def _has_tag(event: Event, letter: str, values: frozenset[str]) -> bool:
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == letter and tag[1] in values:
            return True
    return False


def matches(flt: Filter, event: Event) -> bool:
    """True when ``event`` satisfies every condition of ``flt`` (``limit`` aside)."""
    if flt.ids is not None and event.id not in flt.ids:
        return False
    if flt.authors is not None and event.pubkey not in flt.authors:
        return False
    if flt.kinds is not None and event.kind not in flt.kinds:
        return False
    if flt.since is not None and event.created_at < flt.since:
        return False
    if flt.until is not None and event.created_at > flt.until:
        return False
    return all(_has_tag(event, letter, values) for letter, values in flt.tags)


def matches_any(filters: Iterable[Filter], event: Event) -> bool:
    """True when ``event`` satisfies at least one of ``filters``."""
    return any(matches(flt, event) for flt in filters)
