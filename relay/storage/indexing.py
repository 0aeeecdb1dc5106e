"""Index the stored events for what the configuration asks beyond NIP-01.

The writer indexes every event it stores for the multi-letter tag names of ``[relay.tags]``
and gives the kinds of ``[relay.search]`` a search document (:class:`Indexing`). The events
stored before a name or a kind was configured have neither: :func:`prepare`, run at start
before the relay answers anything, indexes them, in pages, each page in one transaction
under the log lock (so no event it reads is removed meanwhile), and records what is done
(``indexed_tag_names``, ``search_kinds``, migration 0011). A name or kind no longer
configured loses its rows, so adding it again later indexes it afresh.

Every process sharing a database must run with the same ``[relay.tags]`` and
``[relay.search]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import FITNESS_TAG_NAMES
from relay.nostr.search import DEFAULT_SEARCH_KINDS, document_of
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries
from relay.storage.sqlfilter import tag_key

__all__ = [
    "FITNESS_INDEXING",
    "TAG_LETTERS",
    "Indexing",
    "Prepared",
    "document_args",
    "prepare",
    "search_ready",
    "tag_rows",
]

log = logging.getLogger(__name__)

_Q = load_queries("indexing.sql")
_EVENTS = load_queries("events.sql")
_LOCK = _EVENTS["lock_log"]

PAGE = 2_000
"""Events read per transaction while indexing."""

TAG_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""Tag names ``event_tags`` holds for every event: one ASCII letter."""


@dataclass(frozen=True, slots=True)
class Indexing:
    """What the writer indexes besides the event: which multi-letter tag names go to
    ``event_tags`` (single letters always do) and which kinds get a search document."""

    tag_names: frozenset[str] = FITNESS_TAG_NAMES
    search_kinds: frozenset[int] = DEFAULT_SEARCH_KINDS


FITNESS_INDEXING = Indexing()
"""The defaults: the fitness tag names, exercises and templates searched."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare` did: names and kinds indexed over the stored events, and how
    many events it read doing so."""

    names: frozenset[str]
    kinds: frozenset[int]
    events: int


def document_args(events: Sequence[Event], kinds: frozenset[int]) -> list[object] | None:
    """The four arrays fitrelay_ingest_documents takes after fitrelay_ingest's: the search
    documents of the events of ``kinds`` (None when the batch has none)."""
    doc_ev: list[int] = []
    titles: list[str] = []
    vectors: list[str] = []
    words: list[str] = []
    for position, event in enumerate(events, start=1):
        if event.kind not in kinds:
            continue
        document = document_of(event)
        doc_ev.append(position)
        titles.append(document.title)
        vectors.append(document.vector())
        words.extend(document.words)
    return [doc_ev, titles, vectors, words] if doc_ev else None


def tag_rows(event: Event, names: frozenset[str]) -> Iterable[tuple[str, str]]:
    """``(name, stored value)`` of the tags of ``event`` with one of ``names``, each once."""
    seen: set[tuple[str, str]] = set()
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] in names:
            pair = (tag[0], tag_key(tag[1]))
            if pair not in seen:
                seen.add(pair)
                yield pair


async def _index_names(conn: Conn, names: frozenset[str]) -> int:
    patterns = [f'%"{name}"%' for name in sorted(names)]
    after = read = 0
    while True:
        async with conn.transaction():
            await conn.execute(_LOCK)
            rows = await conn.fetch(_Q["page_named"], after, patterns, PAGE)
            ids: list[bytes] = []
            tag_names: list[str] = []
            values: list[str] = []
            for row in rows:
                event = decode_event(row[1].encode())
                for name, value in tag_rows(event, names):
                    ids.append(bytes.fromhex(event.id))
                    tag_names.append(name)
                    values.append(value)
            if ids:
                await conn.execute(_Q["add_tags"], ids, tag_names, values)
        read += len(rows)
        if len(rows) < PAGE:
            return read
        after = rows[-1][0]


async def _index_kinds(conn: Conn, kinds: frozenset[int]) -> int:
    after = read = 0
    while True:
        async with conn.transaction():
            await conn.execute(_LOCK)
            rows = await conn.fetch(_Q["page_kinds"], after, sorted(kinds), PAGE)
            events = [decode_event(row[1].encode()) for row in rows]
            documents = document_args(events, kinds)  # every event here is of those kinds
            if documents is not None:
                ids = [bytes.fromhex(event.id) for event in events]
                await conn.execute(_Q["add_documents"], ids, *documents)
        read += len(rows)
        if len(rows) < PAGE:
            return read
        after = rows[-1][0]


async def search_ready(conn: Conn) -> bool:
    """Whether NIP-50 search can run on this database: pg_trgm, and the trigram index of
    ``search_words`` that migration 0011 builds when pg_trgm is there."""
    return bool(await conn.fetchval(_EVENTS["search_ready"]))


async def prepare(conn: Conn, indexing: Indexing) -> Prepared:
    """Index the stored events for the configured names and kinds not yet indexed, and drop
    the rows of those no longer configured."""
    have_names = frozenset(r[0] for r in await conn.fetch(_Q["indexed_names"]))
    have_kinds = frozenset(r[0] for r in await conn.fetch(_Q["searched_kinds"]))
    if gone_names := have_names - indexing.tag_names:
        await conn.execute(_Q["drop_names"], sorted(gone_names))
        log.info("tag names no longer indexed: %s", ", ".join(sorted(gone_names)))
    if gone_kinds := have_kinds - indexing.search_kinds:
        await conn.execute(_Q["drop_kinds"], sorted(gone_kinds))
        log.info("kinds no longer searched: %s", ", ".join(map(str, sorted(gone_kinds))))
    new_names = indexing.tag_names - have_names
    new_kinds = indexing.search_kinds - have_kinds
    read = 0
    if new_names:
        log.info("indexing stored events for tag names %s", ", ".join(sorted(new_names)))
        read += await _index_names(conn, new_names)
        await conn.execute(_Q["record_names"], sorted(new_names))
    if new_kinds:
        log.info("building search documents for kinds %s", ", ".join(map(str, sorted(new_kinds))))
        read += await _index_kinds(conn, new_kinds)
        await conn.execute(_Q["record_kinds"], sorted(new_kinds))
    if new_names or new_kinds:
        log.info("indexing done: %d stored events read", read)
    return Prepared(new_names, new_kinds, read)
