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
from relay.nostr.search import SearchQuery, document_words, matches_document, parse_search

__all__ = [
    "DEFAULT_RULES",
    "FITNESS_TAG_NAMES",
    "SEARCH_OFF",
    "Filter",
    "FilterRules",
    "matches",
    "matches_any",
    "parse_filter",
]

_TAG_KEY = re.compile(r"#[A-Za-z]\Z")

FITNESS_TAG_NAMES = frozenset({"exercise", "template", "team", "activity", "activity_type"})
"""Multi-letter tag names the fitness kinds use as references or categories: NIP-101e's
``exercise`` (a 33401 coordinate in templates and records, RUNSTR's activity verb in its
records) and ``template`` (the 33402 coordinate a record followed), RUNSTR's ``team`` and
``activity`` (teams, 33404) and ``activity_type`` (competitions). Indexed by default (for
events of every kind, so a filter on one is answered exactly whatever its kinds)."""


SEARCH_OFF = "search (NIP-50) is not offered here"


@dataclass(frozen=True, slots=True)
class FilterRules:
    """What a relay answers beyond NIP-01's fields.

    ``tag_names``: multi-letter tag names that are indexed (single letters always are); a
    filter on another one is refused, since it could not be answered exactly.
    ``search_kinds``: the kinds with NIP-50 search documents, None when search is off.
    """

    tag_names: frozenset[str] = frozenset()
    search_kinds: frozenset[int] | None = None
    search_off_reason: str = SEARCH_OFF
    """The CLOSED reason a ``search`` filter gets when ``search_kinds`` is None."""


DEFAULT_RULES = FilterRules()
"""NIP-01 only: single-letter tags, no search."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One parsed filter. A field that is None places no condition; an empty set matches nothing.

    ``tags`` maps a tag name (a single letter, or an indexed multi-letter name) to the
    accepted values; several names are AND-ed and the values within one name OR-ed.
    ``limit`` is the client's limit, already capped.
    """

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: tuple[tuple[str, frozenset[str]], ...] = ()
    since: int | None = None
    until: int | None = None
    limit: int | None = None
    search: SearchQuery | None = None
    """NIP-50: matching events are answered by relevance, best first (see
    :mod:`relay.nostr.search`)."""


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


def parse_filter(raw: object, limits: Limits, rules: FilterRules = DEFAULT_RULES) -> Filter:
    """Turn one JSON filter object into a :class:`Filter`.

    Raises:
        NostrError: ``invalid:`` for a wrong shape, ``unsupported:`` for a field the relay
        does not implement (so a filter is never silently widened): a multi-letter tag not
        in ``rules.tag_names``, ``search`` when ``rules`` has no search kinds.
    """
    if not isinstance(raw, Mapping):
        raise NostrError("invalid", "a filter must be a JSON object")
    ids = authors = None
    kinds: frozenset[int] | None = None
    since = until = limit = None
    search: SearchQuery | None = None
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
        elif _TAG_KEY.match(key) or (key.startswith("#") and key[1:] in rules.tag_names):
            tags[key[1:]] = frozenset(_strings(key, value, limits))
        elif key.startswith("#"):
            raise NostrError(
                "unsupported",
                f"tag filter {key!r}: only single-letter tags and"
                f" {', '.join(sorted(rules.tag_names)) or 'no others'} are indexed",
            )
        elif key == "search":
            if rules.search_kinds is None:
                raise NostrError("unsupported", rules.search_off_reason)
            search = parse_search(value, rules.search_kinds)
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
        search=search,
    )


def _has_tag(event: Event, name: str, values: frozenset[str]) -> bool:
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == name and tag[1] in values:
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
    if not all(_has_tag(event, name, values) for name, values in flt.tags):
        return False
    search = flt.search
    return search is None or (
        event.kind in search.kinds and matches_document(search.words, document_words(event))
    )


def matches_any(filters: Iterable[Filter], event: Event) -> bool:
    """True when ``event`` satisfies at least one of ``filters``."""
    return any(matches(flt, event) for flt in filters)
