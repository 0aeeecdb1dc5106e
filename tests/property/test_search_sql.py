"""Differential property tests: NIP-50 search and multi-letter tag filters, SQL against the
Python matcher (:func:`relay.nostr.filters.matches`, :mod:`relay.nostr.search`).

A fixed pool of exercises, templates, notes and records, with titles, hashtags and content
drawn from a small vocabulary (so words repeat, near-misses abound and typos hit), and
multi-letter tags (two indexed names and one that is not), is stored through
:meth:`Store.ingest` with kind 1 searchable too. For generated filters (search words taken
from the vocabulary, cut to a prefix, misspelt, non-ASCII or NIP-50 extensions, combined with
kinds, authors, times and tag conditions):

- a filter without search returns exactly the model's ids in order (newest first);
- a search filter whose limit exceeds its matches returns exactly the model's matches (in
  relevance order, which the model does not rank); with a smaller limit, ``limit`` of them;
- COUNT equals the model's count.

A second property checks the word test itself on arbitrary ASCII words: the SQL function
``fitrelay_words_close`` equals :func:`relay.nostr.search.close`, and pg_trgm's ``%`` (the
index's candidates) holds every pair it accepts.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import FilterRules, matches, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.search import close
from relay.storage.indexing import Indexing
from relay.storage.postgres import Store, create_pool
from tests.signer import Keys, dumps

KEYS = [Keys(40 + i) for i in range(3)]
PUBKEYS = [k.pubkey for k in KEYS]
KINDS = (1, 1301, 33401, 33402)
SEARCH_KINDS = frozenset({1, 33401, 33402})
INDEXED = frozenset({"exercise", "template"})
RULES = FilterRules(tag_names=INDEXED, search_kinds=SEARCH_KINDS)
INDEXING = Indexing(tag_names=INDEXED, search_kinds=SEARCH_KINDS)
LIMITS = Limits()
BASE = 1_700_000_000
SPAN = 8
NOW = BASE + 1_000

VOCABULARY = (
    "bench", "press", "barbell", "dumbbell", "squat", "squats", "row", "curl", "deadlift",
    "incline", "overhead", "pres", "bentch", "benc", "rows", "müller", "übung", "3x5", "5k",
    "run", "running", "legs", "chest", "a", "ab", "abs",
)  # fmt: skip
"""Words of titles, tags and content: near-misses of each other on purpose."""
TAG_VALUES = ("33401:x:bench", "33401:x:squat", "running", "33402:x:push", "")


def _text(rng: random.Random, most: int) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(0, most))]
    separators = (" ", ", ", "-", " (", "! ", "_")
    return "".join(w + rng.choice(separators) for w in words).strip()


def fixed_pool(seed: int = 7, size: int = 220) -> list[str]:
    rng = random.Random(seed)
    raws = []
    for i in range(size):
        kind = rng.choice(KINDS)
        tags: list[list[str]] = []
        if kind >= 30_000:
            tags.append(["d", f"d{rng.randrange(60)}"])  # some get replaced
        if rng.random() < 0.8:
            tags.append([rng.choice(("title", "name")), _text(rng, 3).title()])
        for _ in range(rng.randint(0, 2)):
            tags.append([rng.choice(("t", "equipment", "format")), rng.choice(VOCABULARY)])
        for _ in range(rng.randint(0, 2)):
            name = rng.choice(("exercise", "template", "colour"))
            tags.append([name, rng.choice(TAG_VALUES), *(["", "80"] if rng.random() < 0.5 else [])])
        if rng.random() < 0.1:
            tags.append(["expiration", str(NOW - 1 if rng.random() < 0.5 else NOW + 99)])
        content = _text(rng, 5) if rng.random() < 0.7 else ""
        key = KEYS[rng.randrange(len(KEYS))]
        raws.append(dumps(key.sign(kind, content, tags, BASE + rng.randrange(SPAN) + i % 2)))
    return raws


FIXED_POOL = fixed_pool()


def _mangle(word: str, how: int) -> str:
    if how == 1 and len(word) > 1:
        return word[: max(1, len(word) // 2)]  # a prefix
    if how == 2 and len(word) > 3:
        return word[:2] + word[3:]  # a letter dropped
    if how == 3 and len(word) > 3:
        return word[0] + word[2] + word[1] + word[3:]  # two letters swapped
    return word


@st.composite
def search_texts(draw: st.DrawFn) -> str:
    tokens = []
    for _ in range(draw(st.integers(0, 3))):
        word = _mangle(draw(st.sampled_from(VOCABULARY)), draw(st.integers(0, 3)))
        if draw(st.integers(0, 5)) == 0:
            word = word.upper()
        tokens.append(word)
    if draw(st.integers(0, 3)) == 0:
        tokens.insert(draw(st.integers(0, len(tokens))), "language:en")
    return draw(st.sampled_from((" ", "  ", ", "))).join(tokens)


@st.composite
def filter_dicts(draw: st.DrawFn, searched: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if searched:
        raw["search"] = draw(search_texts())
    if draw(st.booleans()):
        raw["kinds"] = draw(st.lists(st.sampled_from((*KINDS, 7)), min_size=1, max_size=3))
    if draw(st.integers(0, 2)) == 0:
        raw["authors"] = draw(st.lists(st.sampled_from(PUBKEYS), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        raw["since"] = BASE + draw(st.integers(0, SPAN))
    if draw(st.integers(0, 3)) == 0:
        raw["until"] = BASE + draw(st.integers(0, SPAN))
    names = draw(st.lists(st.sampled_from(sorted(INDEXED)), max_size=2, unique=True))
    if not searched and not names and draw(st.booleans()):
        names = ["exercise"]
    for name in names:
        raw[f"#{name}"] = draw(st.lists(st.sampled_from(TAG_VALUES), min_size=1, max_size=2))
    raw["limit"] = draw(st.sampled_from((1, 3, 10, 500)))
    return raw


@pytest.fixture
async def loaded(db_dsn: str) -> AsyncIterator[tuple[Store, list[Event]]]:
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        store = Store(pool, default_limit=10, indexing=INDEXING)
        third = len(FIXED_POOL) // 3 + 1
        for start in range(0, len(FIXED_POOL), third):
            chunk = FIXED_POOL[start : start + third]
            await store.ingest([decode_event(r.encode()) for r in chunk], chunk)
        assert await store.purge_expired(NOW) > 0
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT raw FROM events")
        yield store, [decode_event(row[0].encode()) for row in rows]
    finally:
        await pool.close()


def examples(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


def newest_first(events: Sequence[Event]) -> list[str]:
    return [e.id for e in sorted(events, key=lambda e: (-e.created_at, e.id))]


async def test_pool_is_interesting(loaded: tuple[Store, list[Event]]) -> None:
    _store, universe = loaded
    assert len(universe) > 120
    kinds = {e.kind for e in universe}
    assert kinds == set(KINDS)
    names = {t[0] for e in universe for t in e.tags}
    assert {"exercise", "template", "colour", "title", "name"} <= names


@examples(250)
@given(raw=filter_dicts(searched=True))
async def test_search_agrees_with_the_matcher(
    loaded: tuple[Store, list[Event]], raw: dict[str, Any]
) -> None:
    store, universe = loaded
    flt = parse_filter(raw, LIMITS, RULES)
    expected = {e.id for e in universe if matches(flt, e)}
    event("matches", "none" if not expected else "some" if len(expected) < 10 else "many")
    got = [row[0].hex() for row in await store.query([flt], NOW)]
    assert len(got) == len(set(got))
    limit = raw["limit"]
    if limit >= len(expected):
        assert set(got) == expected, raw
    else:
        assert len(got) == limit and set(got) <= expected, raw
    assert await store.count([flt], NOW) == len(expected), raw


@examples(150)
@given(raw=filter_dicts(searched=False))
async def test_multi_letter_tags_agree_with_the_matcher(
    loaded: tuple[Store, list[Event]], raw: dict[str, Any]
) -> None:
    store, universe = loaded
    flt = parse_filter(raw, LIMITS, RULES)
    expected = newest_first([e for e in universe if matches(flt, e)])
    got = [row[0].hex() for row in await store.query([flt], NOW)]
    assert got == expected[: raw["limit"]], raw
    assert await store.count([flt], NOW) == len(expected), raw


@examples(60)
@given(
    raws=st.lists(filter_dicts(searched=True), min_size=2, max_size=3),
)
async def test_several_search_filters_each_event_once(
    loaded: tuple[Store, list[Event]], raws: list[dict[str, Any]]
) -> None:
    store, universe = loaded
    filters = [parse_filter(raw, LIMITS, RULES) for raw in raws]
    got = [row[0].hex() for row in await store.query(filters, NOW)]
    assert len(got) == len(set(got))
    allowed = {e.id for e in universe if any(matches(f, e) for f in filters)}
    assert set(got) <= allowed
    assert await store.count(filters, NOW) == len(allowed)


ascii_words = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@pytest.fixture
async def db_conn(db: asyncpg.Connection[Any]) -> asyncpg.Connection[Any]:
    return db


@examples(400)
@given(a=ascii_words, b=ascii_words)
async def test_word_test_in_sql_is_the_python_one(
    db_conn: asyncpg.Connection[Any], a: str, b: str
) -> None:
    exact, candidate = await db_conn.fetchrow("SELECT fitrelay_words_close($1, $2), $2 % $1", a, b)
    assert exact == close(a, b), (a, b)
    assert candidate or not exact, (a, b)
