"""The key of a cacheable REQ or COUNT: filters in canonical form (see
:mod:`relay.storage.cache`, which holds the answers)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from relay.nostr.event import KindClass, decode_event, expiration, kind_class
from relay.nostr.filters import Filter

__all__ = ["CacheKey", "Op", "Rows", "cache_key", "earliest_expiration"]

Rows: TypeAlias = list[tuple[bytes, str]]
"""What :meth:`Store.query` returns: ``(id, raw JSON)`` newest first."""

_CACHEABLE_CLASSES = (KindClass.REPLACEABLE, KindClass.ADDRESSABLE)


class Op(enum.Enum):
    """The request an answer belongs to: the same filters answer differently."""

    REQ = "REQ"
    COUNT = "COUNT"


_FilterKey: TypeAlias = tuple[
    frozenset[str] | None,  # ids
    frozenset[str] | None,  # authors
    frozenset[int],  # kinds
    frozenset[tuple[str, frozenset[str]]],  # tags
    int | None,  # since
    int | None,  # until
    int | None,  # limit
]
CacheKey: TypeAlias = tuple[str, frozenset[_FilterKey]]
"""The canonical form of one REQ or COUNT (see the module docstring). The request is held by
its name, whose hash CPython caches (an Enum member hashes in Python code)."""


def _cacheable_kinds(kinds: frozenset[int]) -> bool:
    return all(kind_class(kind) in _CACHEABLE_CLASSES for kind in kinds)


def cache_key(op: Op, filters: Sequence[Filter], *, max_index_keys: int = 4_096) -> CacheKey | None:
    """The key of a REQ or COUNT, or None when it cannot be cached.

    Cacheable: at least one filter, and every filter has a non-empty ``kinds`` made only of
    replaceable and addressable kinds and none is a NIP-50 search (not keyed by its query,
    and answered by relevance); and the filters need at most ``max_index_keys`` index
    entries.
    """
    if not filters:
        return None
    parts: list[_FilterKey] = []
    index_keys = 0
    for flt in filters:
        kinds = flt.kinds
        if not kinds or not _cacheable_kinds(kinds) or flt.search is not None:
            return None
        if flt.authors is None:
            index_keys += len(kinds) + 1
        else:
            index_keys += (len(kinds) + 1) * len(flt.authors)
        parts.append(
            (flt.ids, flt.authors, kinds, frozenset(flt.tags), flt.since, flt.until, flt.limit)
        )
    if index_keys > max_index_keys:
        return None
    return (op.value, frozenset(parts))


def earliest_expiration(raws: Iterable[str]) -> int | None:
    """The smallest NIP-40 expiration among events given as raw JSON, None when none has one.

    Only an event whose text holds ``xpiration`` or a ``\\u`` escape (the only way to spell
    the tag name differently in JSON) is decoded; the tag is read by the same
    :func:`relay.nostr.event.expiration` the store uses for ``expires_at``. The tests are
    ordered by cost: ``"xpiration"`` is found faster than ``"expiration"`` (hex has no x), a
    lone backslash is a memchr, and only text with escapes is searched for ``\\u``.
    """
    earliest: int | None = None
    for raw in raws:
        if "xpiration" not in raw and ("\\" not in raw or "\\u" not in raw):
            continue
        value = expiration(decode_event(raw.encode()))
        if value is not None and (earliest is None or value < earliest):
            earliest = value
    return earliest
