"""NIP-50 search and multi-letter tags on real PostgreSQL, through :class:`Store`.

Typos, prefixes and relevance order over an exercise library; search combined with the other
filter fields; a removed event (replaced, deleted by id or address, expired) never found by
search again; multi-letter tag filters answered from ``event_tags``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import FITNESS_TAG_NAMES, Filter, FilterRules, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.search import DEFAULT_SEARCH_KINDS
from relay.storage.indexing import search_ready
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.signer import Keys, dumps

RULES = FilterRules(tag_names=FITNESS_TAG_NAMES, search_kinds=DEFAULT_SEARCH_KINDS)
A, B = Keys(1), Keys(2)
NOW = 2_000_000_000


def exercise(keys: Keys, d: str, title: str, *, at: int = 100, **extra: Any) -> dict[str, Any]:
    tags = [["d", d], ["title", title], ["equipment", extra.get("equipment", "barbell")]]
    tags += [["t", t] for t in extra.get("hashtags", ())]
    return keys.sign(33401, extra.get("content", ""), tags, created_at=at)


def flt(raw: dict[str, Any]) -> Filter:
    return parse_filter(raw, Limits(), RULES)


@pytest.fixture
async def search_store(db_dsn: str) -> AsyncIterator[Store]:
    pool = await create_pool(db_dsn)
    try:
        yield Store(pool, default_limit=100)
    finally:
        await pool.close()


async def put(store: Store, *events: dict[str, Any]) -> list[IngestStatus]:
    texts = [dumps(e) for e in events]
    return await store.ingest([decode_event(t.encode()) for t in texts], texts)


async def titles(store: Store, raw: dict[str, Any]) -> list[str]:
    rows = await store.query([flt(raw)], NOW)
    out = []
    for _id, text in rows:
        event: Event = decode_event(text.encode())
        out.append(next(t[1] for t in event.tags if t[0] == "title"))
    return out


LIBRARY = [
    exercise(A, "bench", "Barbell Bench Press", hashtags=["chest", "push"]),
    exercise(A, "incline", "Incline Dumbbell Bench Press", equipment="dumbbell", at=101),
    exercise(A, "squat", "Back Squat", hashtags=["legs"], content="Bar on the upper back."),
    exercise(B, "press", "Overhead Press", at=102),
    exercise(B, "row", "Barbell Row", content="Pull the bar to the lower chest."),
]


async def test_search_finds_typos_and_prefixes_best_first(search_store: Store) -> None:
    assert set(await put(search_store, *LIBRARY)) == {IngestStatus.STORED}
    found = await titles(search_store, {"search": "bench pres"})
    assert found == ["Barbell Bench Press", "Incline Dumbbell Bench Press"]
    assert await titles(search_store, {"search": "bentch press"}) == found
    assert await titles(search_store, {"search": "chest"}) == ["Barbell Bench Press", "Barbell Row"]
    # The limit keeps the best matches, not the newest.
    assert await titles(search_store, {"search": "press", "limit": 1}) == ["Overhead Press"]
    assert await titles(search_store, {"search": "deadlift"}) == []


async def test_search_combines_with_other_fields_and_ignores_extensions(
    search_store: Store,
) -> None:
    await put(search_store, *LIBRARY, A.sign(1, "bench press day", [], created_at=103))
    assert await titles(search_store, {"search": "press", "authors": [B.pubkey]}) == [
        "Overhead Press"
    ]
    assert await titles(search_store, {"search": "press language:en nsfw:false", "since": 101}) == [
        "Overhead Press",
        "Incline Dumbbell Bench Press",
    ]
    # Kind 1 has no search documents by default: never found by search.
    assert await titles(search_store, {"search": "press", "kinds": [1]}) == []
    assert await search_store.count([flt({"search": "bench"})], NOW) == 2


async def test_removed_events_are_never_found(
    search_store: Store, db: asyncpg.Connection[Any]
) -> None:
    old = exercise(A, "bench", "Barbell Bench Press", at=100)
    newer = exercise(A, "bench", "Barbell Floor Press", at=200)
    gone = exercise(B, "row", "Pendlay Row", at=100)
    brief = A.sign(33402, "", [["d", "t1"], ["title", "Pendlay Row Day"],
                               ["expiration", str(NOW - 1)]], created_at=100)  # fmt: skip
    await put(search_store, old, gone, brief)
    assert await titles(search_store, {"search": "bench"}) == ["Barbell Bench Press"]
    await put(search_store, newer)
    assert await titles(search_store, {"search": "bench"}) == []
    assert await titles(search_store, {"search": "floor"}) == ["Barbell Floor Press"]
    await put(search_store, B.sign(5, "", [["e", gone["id"]]], created_at=300))
    assert await titles(search_store, {"search": "pendlay"}) == []
    await put(search_store, A.sign(5, "", [["a", f"33401:{A.pubkey}:bench"]], created_at=300))
    assert await titles(search_store, {"search": "floor"}) == []
    assert await search_store.purge_expired(NOW) == 1
    assert await db.fetchval("SELECT count(*) FROM search_documents") == 0


async def test_replaced_in_the_same_batch_has_no_document(
    search_store: Store, db: asyncpg.Connection[Any]
) -> None:
    first = exercise(A, "x", "Zercher Squat", at=100)
    second = exercise(A, "x", "Zercher Carry", at=101)
    await put(search_store, first, second)
    assert await titles(search_store, {"search": "zercher"}) == ["Zercher Carry"]
    assert await db.fetchval("SELECT count(*) FROM search_documents") == 1


async def test_multi_letter_tags(search_store: Store) -> None:
    coord = f"33401:{A.pubkey}:bench"
    template = A.sign(33402, "", [["d", "push"], ["title", "Push Day"],
                                  ["exercise", coord, "", "80", "5"]], created_at=10)  # fmt: skip
    tcoord = f"33402:{A.pubkey}:push"
    sets = ["exercise", coord, "", "80", "5", "8", "normal"]
    record = A.sign(1301, "", [["d", "r1"], ["template", tcoord, ""], sets], created_at=20)
    run = B.sign(1301, "5k", [["d", "r2"], ["exercise", "running"]], created_at=30)
    await put(search_store, template, record, run)

    async def ids(raw: dict[str, Any]) -> list[str]:
        return [row[0].hex() for row in await search_store.query([flt(raw)], NOW)]

    assert await ids({"#exercise": [coord]}) == [record["id"], template["id"]]
    assert await ids({"#exercise": [coord], "kinds": [33402]}) == [template["id"]]
    assert await ids({"#template": [tcoord]}) == [record["id"]]
    assert await ids({"#exercise": ["running", "cycling"], "kinds": [1301]}) == [run["id"]]
    assert await search_store.count([flt({"#exercise": [coord, "running"]})], NOW) == 3


async def test_search_ready_with_pg_trgm(db: asyncpg.Connection[Any]) -> None:
    assert await search_ready(db)
