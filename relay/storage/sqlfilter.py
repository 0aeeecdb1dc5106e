"""Filters → parameterised SQL. The only place fitrelay builds SQL text at run time.

The text depends only on a filter's shape (which fields are present, how many tag letters),
never on its values, so asyncpg's statement cache stays hot. Values travel as parameters,
lists as arrays. Connections run with ``plan_cache_mode = force_custom_plan`` so a prepared
tag query never falls into PostgreSQL's generic plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from relay.nostr.filters import Filter

__all__ = ["compile_count", "compile_query", "effective_limit", "tag_key"]

TAG_VALUE_INLINE_BYTES = 200
_HASHED = "\x01"


def tag_key(value: str) -> str:
    """How a tag value is stored in ``event_tags.value`` (see migration 0001).

    A value holding U+0000 is hashed too: PostgreSQL text cannot hold it.
    """
    encoded = value.encode()
    if (
        len(encoded) <= TAG_VALUE_INLINE_BYTES
        and not value.startswith(_HASHED)
        and "\x00" not in value
    ):
        return value
    return _HASHED + hashlib.sha256(encoded).hexdigest()


def effective_limit(flt: Filter, default_limit: int) -> int:
    return default_limit if flt.limit is None else flt.limit


class _Params:
    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _where(flt: Filter, now: int, params: _Params) -> str:
    conds: list[str] = []
    if flt.ids is not None:
        conds.append(f"e.id = ANY({params.add([bytes.fromhex(v) for v in sorted(flt.ids)])})")
    if flt.authors is not None:
        authors = [bytes.fromhex(v) for v in sorted(flt.authors)]
        conds.append(f"e.pubkey = ANY({params.add(authors)})")
    if flt.kinds is not None:
        conds.append(f"e.kind = ANY({params.add(sorted(flt.kinds))}::integer[])")
    if flt.since is not None:
        conds.append(f"e.created_at >= {params.add(flt.since)}::bigint")
    if flt.until is not None:
        conds.append(f"e.created_at <= {params.add(flt.until)}::bigint")
    conds.append(f"(e.expires_at IS NULL OR e.expires_at > {params.add(now)}::bigint)")
    for letter, values in flt.tags:
        keys = sorted({tag_key(v) for v in values})
        name = params.add(letter)
        conds.append(
            "e.id IN (SELECT t.event_id FROM event_tags t"
            f" WHERE t.name = {name}::text AND t.value = ANY({params.add(keys)}::text[]))"
        )
    return " AND ".join(conds)


def compile_query(flt: Filter, now: int, limit: int) -> tuple[str, list[object]]:
    """``SELECT created_at, id, raw`` of the newest ``limit`` matches, ties by lowest id."""
    params = _Params()
    where = _where(flt, now, params)
    sql = (
        f"SELECT e.created_at, e.id, e.raw FROM events e WHERE {where}"
        f" ORDER BY e.created_at DESC, e.id LIMIT {params.add(limit)}"
    )
    return sql, params.values


def compile_count(filters: Sequence[Filter], now: int) -> tuple[str, list[object]]:
    """``SELECT count(*)`` of the union of ``filters`` (NIP-45); limits do not apply."""
    params = _Params()
    parts = [f"SELECT e.id FROM events e WHERE {_where(f, now, params)}" for f in filters]
    return f"SELECT count(*) FROM ({' UNION '.join(parts)}) AS matched", params.values
