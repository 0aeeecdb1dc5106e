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


def _where(flt: Filter, now: int, params: _Params, *, skip_tags: int = 0) -> str:
    """The conditions on ``events e``; the first ``skip_tags`` tag conditions are left out
    (the caller applies them through a join)."""
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
    for letter, values in flt.tags[skip_tags:]:
        keys = sorted({tag_key(v) for v in values})
        name = params.add(letter)
        conds.append(
            "e.id IN (SELECT t.event_id FROM event_tags t"
            f" WHERE t.name = {name}::text AND t.value = ANY({params.add(keys)}::text[]))"
        )
    return " AND ".join(conds)


def compile_query(flt: Filter, now: int, limit: int) -> tuple[str, list[object]]:
    """``SELECT created_at, id, raw`` of the newest ``limit`` matches, ties by lowest id.

    A filter led by one tag value (``{"#t":["running"]}``, an address's ``#d``) is driven
    from ``event_tags``: its index is already in ``(created_at DESC, event_id)`` order for
    one value, so the scan stops after ``limit`` matches instead of collecting every event
    with a popular tag and sorting them. ``event_tags`` holds one row per (event, letter,
    value), so the join yields each event once.
    """
    params = _Params()
    if flt.ids is None and flt.tags and len({tag_key(v) for v in flt.tags[0][1]}) == 1:
        letter, values = flt.tags[0]
        drive = [
            f"t.name = {params.add(letter)}::text",
            f"t.value = {params.add(tag_key(next(iter(values))))}::text",
        ]
        if flt.kinds is not None and len(flt.kinds) == 1:
            # Equality, so the (name, value, kind, created_at DESC) index gives the order.
            drive.append(f"t.kind = {params.add(next(iter(flt.kinds)))}::integer")
        elif flt.kinds is not None:
            drive.append(f"t.kind = ANY({params.add(sorted(flt.kinds))}::integer[])")
        if flt.authors is not None:
            authors = [bytes.fromhex(v) for v in sorted(flt.authors)]
            drive.append(f"t.pubkey = ANY({params.add(authors)}::bytea[])")
        if flt.since is not None:
            drive.append(f"t.created_at >= {params.add(flt.since)}::bigint")
        if flt.until is not None:
            drive.append(f"t.created_at <= {params.add(flt.until)}::bigint")
        where = _where(flt, now, params, skip_tags=1)
        sql = (
            "SELECT e.created_at, e.id, e.raw FROM event_tags t"
            f" JOIN events e ON e.id = t.event_id WHERE {' AND '.join(drive)} AND {where}"
            f" ORDER BY t.created_at DESC, t.event_id LIMIT {params.add(limit)}"
        )
        return sql, params.values
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
