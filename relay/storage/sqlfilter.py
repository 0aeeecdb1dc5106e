"""Filters → parameterised SQL. The only place fitrelay builds SQL text at run time.

The text depends only on a filter's shape (which fields are present, how many tag letters),
never on its values, so asyncpg's statement cache stays hot. Values travel as parameters,
lists as arrays. Most shapes leave the planner one sensible plan whatever the values (an
index read in ``created_at`` order that stops after the limit, one stream per author x kind
or tag value, or ids); relay connections run those on generic plans and skip planning. The
rest say so (:attr:`Query.generic` false) and are run with a plan made for their values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from relay.nostr.filters import Filter
from relay.nostr.search import SearchQuery

__all__ = [
    "Query",
    "compile_count",
    "compile_cutoff",
    "compile_query",
    "effective_limit",
    "tag_key",
]

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


MAX_STREAMS = 32
"""A filter whose matches split into at most this many index-ordered streams is answered by
merging the newest ``limit`` of each (see :func:`compile_query`)."""

MAX_KEY_STREAMS = 2_000
"""Authors (times kinds) beyond ``MAX_STREAMS`` and up to this many are answered from their
index entries first (see :func:`_keyed_query`)."""


def _match(column: str, values: Sequence[object], cast: str, params: _Params) -> str:
    """``column`` against a list: equality for one value (an index can then give its order),
    ``ANY`` for several."""
    if len(values) == 1:
        return f"{column} = {params.add(values[0])}{cast}"
    return f"{column} = ANY({params.add(list(values))}{cast}[])"


def _where(
    flt: Filter,
    now: int,
    params: _Params,
    *,
    skip_tags: int = 0,
    bound: dict[str, str] | None = None,
) -> str:
    """The conditions on ``events e`` (or on ``search_documents e``, which names its columns
    as ``events`` does), ``search`` aside. The first ``skip_tags`` tag conditions are left
    out (the caller applies them through a join); a field in ``bound`` (``authors``,
    ``kinds``) is compared with the given expression, the caller's stream key, instead of
    its list; ``ids`` names the column the ids are looked up in (``e.id`` by default)."""
    bound = bound or {}
    conds: list[str] = []
    if flt.ids is not None:
        ids = [bytes.fromhex(v) for v in sorted(flt.ids)]
        conds.append(_match(bound.get("ids", "e.id"), ids, "::bytea", params))
    if "authors" in bound:
        conds.append(f"e.pubkey = {bound['authors']}")
    elif flt.authors is not None:
        conds.append(
            _match("e.pubkey", [bytes.fromhex(v) for v in sorted(flt.authors)], "::bytea", params)
        )
    if "kinds" in bound:
        conds.append(f"e.kind = {bound['kinds']}")
    elif flt.kinds is not None:
        conds.append(_match("e.kind", sorted(flt.kinds), "::integer", params))
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


def _tsquery(search: SearchQuery, params: _Params) -> str:
    """The ``tsquery`` of a search's words (at least one), as a scalar subquery: each word
    as a prefix (``'pres':*``) or any stored word close to it by trigrams, AND-ed.

    pg_trgm's ``%`` (similarity at least 0.3 by its default threshold) finds candidates on
    the GIN index of ``search_words``; ``fitrelay_words_close`` (migration 0011) then keeps
    exactly those :func:`relay.nostr.search.close` keeps. For ASCII words both count the same
    trigrams, so the candidates hold every close word."""
    words = params.add(list(search.words))
    return (
        "(SELECT string_agg('(' || quote_literal(w.word) || ':*' || coalesce(f.alts, '') || ')',"
        " ' & ' ORDER BY w.n)::tsquery"
        f" FROM unnest({words}::text[]) WITH ORDINALITY AS w (word, n)"
        " LEFT JOIN LATERAL (SELECT string_agg(' | ' || quote_literal(l.word), '') AS alts"
        " FROM search_words l WHERE octet_length(w.word) = char_length(w.word)"
        " AND l.word % w.word AND octet_length(l.word) = char_length(l.word)"
        " AND fitrelay_words_close(w.word, l.word)) AS f ON true)"
    )


def _search_count_part(flt: Filter, search: SearchQuery, now: int, params: _Params) -> str:
    """The ids a search filter matches (limits aside), read from ``search_documents``."""
    conds = [f"e.kind = ANY({params.add(sorted(search.kinds))}::integer[])"]
    if search.words:
        conds.append(f"e.doc @@ {_tsquery(search, params)}")
    conds.append(_where(flt, now, params))
    return f"SELECT e.id FROM search_documents e WHERE {' AND '.join(conds)}"


def _search_query(
    flt: Filter, search: SearchQuery, now: int, limit: int, raw: bool
) -> tuple[str, list[object]]:
    """The best ``limit`` matches of a search filter, by relevance (NIP-50): ``ts_rank``
    over the document's words, a hit in the title weighing most, then in hashtags, equipment
    and the other text tags, then in the content (weights A, B and D, see
    :meth:`relay.nostr.search.Document.vector`); then the shorter title (the closer match:
    "Bench Press" before "Incline Dumbbell Bench Press"); then newest first, ties by lowest
    id.

    ``search_documents`` carries the event's id, kind, pubkey, created_at and expiration
    under the names ``events`` gives them, so the filter's conditions (:func:`_where`, the
    table aliased ``e``) and the ranking run on it alone; ``events`` is read for the JSON of
    the best ``limit`` only, and not at all when the caller has it (``raw`` false)."""
    params = _Params()
    kinds = params.add(sorted(search.kinds))
    if search.words:
        # MATERIALIZED: the tsquery is built once, not once for the match and once more for
        # the rank.
        source = (
            f"(WITH q AS MATERIALIZED (SELECT {_tsquery(search, params)} AS query)"
            " SELECT q.query FROM q) AS q CROSS JOIN search_documents e"
        )
        match = " AND e.doc @@ q.query"
        rank = "ts_rank(e.doc, q.query)"
    else:
        source, match, rank = "search_documents e", "", "0::real"
    where = _where(flt, now, params)
    best = (
        f"SELECT e.created_at, e.id, {rank} AS r1, length(e.title) AS r2"
        f" FROM {source} WHERE e.kind = ANY({kinds}::integer[]){match} AND {where}"
        f" ORDER BY r1 DESC, r2, e.created_at DESC, e.id LIMIT {params.add(limit)}"
    )
    order = "ORDER BY x.r1 DESC, x.r2, x.created_at DESC, x.id"
    if not raw:
        return f"SELECT x.created_at, x.id FROM ({best}) AS x {order}", params.values
    sql = (
        f"SELECT x.created_at, x.id, ev.raw FROM ({best}) AS x"
        f" JOIN events ev ON ev.id = x.id {order}"
    )
    return sql, params.values


def _columns(alias: str, raw: bool) -> str:
    """What a query selects from ``alias``: ``created_at, id`` and, unless the caller takes
    the JSON from elsewhere (:mod:`relay.storage.eventcache`), ``raw``."""
    return (
        f"{alias}.created_at, {alias}.id, {alias}.raw" if raw else f"{alias}.created_at, {alias}.id"
    )


def _probe(event_id: str, created_at: str, columns: str, where: str = "") -> str:
    """``events e`` looked up once per outer row, by its id and created_at: on the
    partitioned layout each lookup reads the one partition that can hold the event. As a
    LATERAL subquery with LIMIT 1 (ids are unique) it is not flattened into a join, whose
    estimate would multiply the selectivities of the two (entirely correlated) equalities
    and talk the planner out of the index-ordered nested loop."""
    conds = f"e.id = {event_id} AND e.created_at = {created_at}"
    if where:
        conds += f" AND {where}"
    return f"CROSS JOIN LATERAL (SELECT {columns} FROM events e WHERE {conds} LIMIT 1) AS e"


def _tag_query(flt: Filter, now: int, limit: int, raw: bool) -> tuple[str, list[object]] | None:
    """The query of a filter led by a tag, driven from ``event_tags``; None when its first
    tag has so many values (times kinds) that one scan sorting them is better.

    ``event_tags`` is indexed on ``(name, value, created_at DESC, event_id)`` and on
    ``(name, value, kind, created_at DESC, event_id)``: for one value (and one kind) the index
    is already in answer order and the scan stops after ``limit`` matches, instead of
    collecting every event with a popular tag and sorting them. Several values, or several
    kinds, make one such stream each; the newest ``limit`` of each are merged. One row per
    (event, letter, value) means one stream yields an event once; streams of different values
    can share one, hence ``DISTINCT ON``.
    """
    letter, values = flt.tags[0]
    keys = sorted({tag_key(v) for v in values})
    kinds = sorted(flt.kinds) if flt.kinds is not None else None
    per_kind = kinds is not None and len(kinds) > 1
    if len(keys) * (len(kinds) if per_kind and kinds else 1) > MAX_STREAMS:
        return None
    params = _Params()
    sources: list[str] = []
    drive = [f"t.name = {params.add(letter)}::text"]
    if len(keys) == 1:
        drive.append(f"t.value = {params.add(keys[0])}::text")
    else:
        sources.append(f"unnest({params.add(keys)}::text[]) AS v (value)")
        drive.append("t.value = v.value")
    if kinds is not None and per_kind:
        sources.append(f"unnest({params.add(kinds)}::integer[]) AS k (kind)")
        drive.append("t.kind = k.kind")
    elif kinds is not None:
        drive.append(_match("t.kind", kinds, "::integer", params))
    if flt.authors is not None:
        authors = [bytes.fromhex(v) for v in sorted(flt.authors)]
        drive.append(_match("t.pubkey", authors, "::bytea", params))
    if flt.since is not None:
        drive.append(f"t.created_at >= {params.add(flt.since)}::bigint")
    if flt.until is not None:
        drive.append(f"t.created_at <= {params.add(flt.until)}::bigint")
    bound = {"kinds": "k.kind"} if per_kind else None
    where = _where(flt, now, params, skip_tags=1, bound=bound)
    lim = params.add(limit)
    stream = (
        f"SELECT {_columns('e', raw)} FROM event_tags t"
        f" {_probe('t.event_id', 't.created_at', _columns('e', raw), where)}"
        f" WHERE {' AND '.join(drive)} ORDER BY t.created_at DESC, t.event_id LIMIT {lim}"
    )
    if not sources:
        return stream, params.values
    distinct = "DISTINCT ON (x.created_at, x.id) " if len(keys) > 1 else ""
    sql = (
        f"SELECT {distinct}{_columns('x', raw)} FROM {' CROSS JOIN '.join(sources)}"
        f" CROSS JOIN LATERAL ({stream}) AS x ORDER BY x.created_at DESC, x.id LIMIT {lim}"
    )
    return sql, params.values


def _streams(flt: Filter) -> int:
    """How many (author, kind) streams a filter without ids or tags splits into (0 for one
    with ids or tags, which are not read that way)."""
    if flt.ids is not None or flt.tags:
        return 0
    authors = 1 if flt.authors is None else len(flt.authors)
    return authors * (1 if flt.kinds is None else len(flt.kinds))


def _key_sources(flt: Filter, params: _Params) -> tuple[list[str], dict[str, str]]:
    """``unnest`` of the filter's authors and kinds, one row per stream key, and the column
    each field is bound to (as :func:`_where` takes it)."""
    sources: list[str] = []
    bound: dict[str, str] = {}
    if flt.authors is not None:
        authors = [bytes.fromhex(v) for v in sorted(flt.authors)]
        sources.append(f"unnest({params.add(authors)}::bytea[]) AS a (pubkey)")
        bound["authors"] = "a.pubkey"
    if flt.kinds is not None:
        sources.append(f"unnest({params.add(sorted(flt.kinds))}::integer[]) AS k (kind)")
        bound["kinds"] = "k.kind"
    return sources, bound


def _stream_query(flt: Filter, now: int, limit: int, raw: bool) -> tuple[str, list[object]] | None:
    """The query of a filter on authors and/or kinds (no ids, no tags), as one stream per
    (author, kind) pair, or per author, or per kind, each the newest ``limit`` from its index
    in answer order, merged; None when there are too many pairs for that to pay.

    With ``pubkey = ANY(...)`` or ``kind = ANY(...)`` PostgreSQL cannot read an index in
    ``created_at`` order, so it either sorts every match (an author's whole history) or walks
    ``events_created_idx`` filtering (every recent event of everyone). Even one author and
    one kind go through ``unnest``: given the values as constants, the planner weighs them
    against its statistics and, for a prolific author whose events are all old, walks the
    newest events of everyone looking for theirs; given them as the outer side of a join, it
    reads their index.
    """
    if (flt.authors is None and flt.kinds is None) or not 1 <= _streams(flt) <= MAX_STREAMS:
        return None
    params = _Params()
    sources, bound = _key_sources(flt, params)
    where = _where(flt, now, params, bound=bound)
    lim = params.add(limit)
    sql = (
        f"SELECT {_columns('x', raw)} FROM {' CROSS JOIN '.join(sources)}"
        f" CROSS JOIN LATERAL (SELECT {_columns('e', raw)} FROM events e"
        f" WHERE {where} ORDER BY e.created_at DESC, e.id LIMIT {lim}) AS x"
        f" ORDER BY x.created_at DESC, x.id LIMIT {lim}"
    )
    return sql, params.values


class Query(NamedTuple):
    """A statement and its parameters."""

    sql: str
    args: list[object]
    generic: bool
    """Its plan does not depend on the values (index streams in answer order, or ids), so
    the generic plan of the prepared statement serves every run; otherwise the statement
    wants a plan made for its values (``ANY`` over many authors or tag values, COUNT), and
    a generic plan can be a hundred times slower."""
    search: bool = False
    """A NIP-50 search: planned for its values, with bitmap scans allowed (its GIN indexes
    are read no other way)."""
    unless_expired: Query | None = None
    """Set when the statement picks its candidates without looking at expiration: its rows
    carry one more column, last, true for an expired event, and if any row has it the answer is
    this query's instead."""

    def exact(self) -> Query:
        """The statement whose rows are the answer as they are."""
        return self.unless_expired or self


def _keyed_query(flt: Filter, now: int, limit: int, raw: bool) -> tuple[str, list[object]] | None:
    """A filter on many authors (a follow feed), from their index entries first.

    Past ``MAX_STREAMS`` pairs the plain scan walks ``events_created_idx`` from the newest
    event of everyone, filtering, until it has ``limit`` by these authors: every event by
    others since then is read. Here the index entries of each (author, kind) pair, or each
    author, are read in two rounds (index-only reads where the table is vacuumed), as a merge
    of per-key cursors under one shared bound would:

    1. each key's newest ``k`` entries, ``k`` about ``limit`` / keys + 1 (candidates ``c``);
    2. ``low``, the ``created_at`` of the ``limit``-th newest candidate: the answer holds
       nothing older, as ``limit`` candidates at least that new exist. A key that gave fewer
       than ``k`` candidates, or whose ``k``-th is older than ``low``, has given everything
       the answer could take from it; the others (``f``, "full") read their entries down to
       ``low`` (all of them, up to ``limit``, when there are fewer than ``limit``
       candidates and so no bound).

    The newest ``limit`` of those are joined to ``events``. Reading the newest ``limit`` of
    every key instead read up to keys x ``limit`` entries: 100,000 for a follow feed of 500
    authors and two kinds. Expiration is not in those indexes, so it is checked on the joined
    rows (see :attr:`Query.unless_expired`)."""
    if flt.authors is None or not MAX_STREAMS < (keys := _streams(flt)) <= MAX_KEY_STREAMS:
        return None
    params = _Params()
    sources, bound = _key_sources(flt, params)
    columns = {"pubkey": bound["authors"]} | ({"kind": bound["kinds"]} if "kinds" in bound else {})
    window = []
    if flt.since is not None:
        window.append(f"i.created_at >= {params.add(flt.since)}::bigint")
    if flt.until is not None:
        window.append(f"i.created_at <= {params.add(flt.until)}::bigint")
    first = params.add(min(limit, limit // keys + 2))
    lim = params.add(limit)
    at = params.add(now)

    def entries(source: str, extra: list[str], take: str) -> str:
        """``created_at, id`` of the newest ``take`` index entries of ``source``'s key."""
        conds = [f"i.{column} = {source}.{column}" for column in columns] + window + extra
        return (
            f"SELECT i.created_at, i.id FROM events i WHERE {' AND '.join(conds)}"
            f" ORDER BY i.created_at DESC, i.id LIMIT {take}"
        )

    key_list = ", ".join(columns)
    keyed = ", ".join(f"{expr} AS {column}" for column, expr in columns.items())
    floor = "coalesce((SELECT b.low FROM b), -9223372036854775808)"
    sql = (
        f"WITH s AS (SELECT {keyed} FROM {' CROSS JOIN '.join(sources)}),"
        f" c AS MATERIALIZED (SELECT {', '.join(f's.{c}' for c in columns)}, y.created_at, y.id"
        f" FROM s CROSS JOIN LATERAL ({entries('s', [], first)}) AS y),"
        f" b AS (SELECT CASE WHEN count(*) = {lim} THEN min(t.created_at) END AS low"
        f" FROM (SELECT c.created_at FROM c ORDER BY c.created_at DESC, c.id LIMIT {lim}) AS t),"
        f" f AS (SELECT {key_list} FROM c GROUP BY {key_list}"
        f" HAVING count(*) = {first} AND min(c.created_at) >= {floor}),"
        " m AS (SELECT c.created_at, c.id FROM c UNION SELECT y.created_at, y.id FROM f"
        f" CROSS JOIN LATERAL ({entries('f', [f'i.created_at >= {floor}'], lim)}) AS y)"
        f" SELECT x.created_at, x.id,{' e.raw,' if raw else ''}"
        f" (e.expires_at IS NOT NULL AND e.expires_at <= {at}::bigint) AS expired"
        f" FROM (SELECT m.created_at, m.id FROM m ORDER BY m.created_at DESC, m.id LIMIT {lim})"
        f" AS x {_probe('x.id', 'x.created_at', 'e.expires_at, e.raw' if raw else 'e.expires_at')}"
        " ORDER BY x.created_at DESC, x.id"
    )
    return sql, params.values


def compile_query(
    flt: Filter, now: int, limit: int, *, raw: bool = True, keys: bool = False
) -> Query:
    """``SELECT created_at, id, raw`` of the newest ``limit`` matches, ties by lowest id;
    without ``raw`` when it is false (the caller has the JSON of most events already).
    ``keys``: the database has ``event_keys`` (the partitioned layout, see
    :mod:`relay.storage.partition`), which ids are looked up in.

    The plan is chosen by the filter's shape, so that an index hands rows over in answer
    order wherever one can: a tag-led filter from ``event_tags``, a few authors or kinds as
    merged per-key streams, anything else as one scan of ``events``. A search filter is
    answered by relevance instead (:func:`_search_query`).
    """
    if flt.search is not None:
        return Query(*_search_query(flt, flt.search, now, limit, raw), generic=False, search=True)
    if flt.ids is None and flt.tags:
        led = _tag_query(flt, now, limit, raw)
        if led is not None:
            return Query(*led, generic=True)
    streamed = _stream_query(flt, now, limit, raw)
    if streamed is not None:
        return Query(*streamed, generic=True)
    params = _Params()
    source, bound = "events e", None
    if keys and flt.ids is not None:
        # Partitioned: each id's created_at from event_keys, so each probe of events prunes
        # to the one partition that can hold it.
        source = "event_keys k JOIN events e ON e.id = k.id AND e.created_at = k.created_at"
        bound = {"ids": "k.id"}
    where = _where(flt, now, params, bound=bound)
    # Led by ids, the few rows are found by primary key and sorted: "+ 0" keeps the order
    # from matching an index, which on a partitioned events table would otherwise tempt the
    # generic plan into a Merge Append of whole created_at scans, filtering on id.
    order = "e.created_at + 0 DESC, e.id" if flt.ids is not None else "e.created_at DESC, e.id"
    sql = (
        f"SELECT {_columns('e', raw)} FROM {source} WHERE {where}"
        f" ORDER BY {order} LIMIT {params.add(limit)}"
    )
    # Led by ids, or bounded by time alone: an index lookup or a created_at scan either way.
    by_time = flt.authors is None and flt.kinds is None and not flt.tags
    scan = Query(sql, params.values, generic=flt.ids is not None or by_time)
    keyed = _keyed_query(flt, now, limit, raw)
    if keyed is not None:
        return Query(*keyed, generic=True, unless_expired=scan)
    return scan


def compile_count(filters: Sequence[Filter], now: int) -> Query:
    """``SELECT count(*)`` of the union of ``filters`` (NIP-45); limits do not apply."""
    params = _Params()
    parts = [
        f"SELECT e.id FROM events e WHERE {_where(f, now, params)}"
        if f.search is None
        else _search_count_part(f, f.search, now, params)
        for f in filters
    ]
    sql = f"SELECT count(*) FROM ({' UNION '.join(parts)}) AS matched"
    searched = any(f.search is not None for f in filters)
    return Query(sql, params.values, generic=False, search=searched)


def compile_cutoff(flt: Filter, now: int, limit: int) -> tuple[str, list[object]]:
    """The statement that finds ``(created_at, id)`` of the last of the ``limit`` newest
    matches of ``flt`` in the REQ order (no row when nothing matches): the relay's own query,
    read back one row. Planned per run, for a connection that does so."""
    sql, args = compile_query(flt, now, limit).exact()[:2]
    wrapped = (
        f"SELECT q.created_at, q.id FROM ({sql}) AS q ORDER BY q.created_at, q.id DESC LIMIT 1"
    )
    return wrapped, args
