"""Differential property test: the SQL the relay runs against the Python reference matcher.

strfry's "dumbFilter" idea. Events are stored through :meth:`Store.ingest` (which applies the
replace rules), the stored universe is read back (``SELECT raw FROM events``), and for random
filters :meth:`Store.query` and :meth:`Store.count` must agree with
:func:`relay.nostr.filters.matches` applied to that universe in Python: NIP-40 expiration
against ``now``, each filter's own limit (or the default) applied before the union, each event
once, newest first with ties by lowest id, and a COUNT that ignores limits. The Python side is
itself checked against a naive NIP-01 reading of the raw filter dict, and the stored universe
against a model of the replace rules. Each test runs on a store that reads the JSON with its
query and on one that reads ids and takes the JSON from a small event cache.

The alphabet is deliberately small (three keys, a handful of kinds, six timestamps, a few tag
letters and values) so filters hit often, and most filters are built around one event of the
pool. Tag values include long ones and ones holding U+0001 or U+0000 (stored hashed, see
:func:`relay.storage.sqlfilter.tag_key`) and non-ASCII ones; tag names include multi-letter
ones and an upper-case twin, which a filter must never reach; some tags have one element.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from relay.nostr.event import Event, KindClass, decode_event, kind_class
from relay.nostr.filters import Filter, matches, parse_filter
from relay.nostr.limits import Limits
from relay.server.live import LiveIndex, LogTail
from relay.storage.eventcache import EventCache
from relay.storage.mirror import Mirror, MirroredStore
from relay.storage.postgres import IngestStatus, Store, create_pool
from relay.storage.sqlfilter import MAX_STREAMS, TAG_VALUE_INLINE_BYTES, compile_query
from tests.conftest import PARTITIONED
from tests.signer import Keys, dumps

# A failing example can hold long tag values; let Hypothesis print it rather than fail on
# its own "overly large repr" warning (pytest turns warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

KEYS = [Keys(seed) for seed in range(3)]
PUBKEYS = [k.pubkey for k in KEYS]
UNKNOWN_HEX = hashlib.sha256(b"fitrelay-nobody").hexdigest()
REGULAR_KINDS = (1, 7, 1301)
REPLACEABLE_KINDS = (0, 10002)
ADDRESSABLE_KINDS = (30003, 33401, 33402)
KINDS = REGULAR_KINDS + REPLACEABLE_KINDS + ADDRESSABLE_KINDS
BASE = 1_700_000_000
SPAN = 6  # created_at in BASE .. BASE + SPAN - 1: many ties
DEFAULT_LIMIT = 7  # small, so a filter without "limit" is truncated too
LIMITS = Limits()

LONG_ASCII = "L" * 250
LONG_ASCII_2 = LONG_ASCII + "z"  # same first 250 bytes: the stored keys must differ
LONG_UTF8 = "é" * 101  # 101 characters but 202 UTF-8 bytes: hashed
EXACT_INLINE = "x" * TAG_VALUE_INLINE_BYTES  # the longest value stored as itself
NUL = "a\x00b"  # PostgreSQL text cannot hold U+0000
assert len(LONG_UTF8) <= TAG_VALUE_INLINE_BYTES < len(LONG_UTF8.encode())
VALUES = (
    "a",
    "A",
    "b",
    "",
    "ŝnøw ☃ 日本",
    LONG_ASCII,
    LONG_ASCII_2,
    LONG_UTF8,
    EXACT_INLINE,
    "\x01a",  # starts with the hashed-key marker: stored hashed
    NUL,
)

FILTER_LETTERS = ("e", "p", "t", "d", "a", "T", "x")  # x: no event uses it
# Names events use: single letters, multi-letter names a filter cannot ask for and must not
# reach through their first letter, and the upper-case twin of a lower-case letter.
TAG_NAMES = ("e", "p", "t", "d", "a", "T", "tt", "ee", "E")
EXPIRATIONS = (*(str(BASE + i) for i in range(SPAN + 2)), "soon")  # "soon": no expiration


# --------------------------------------------------------------------------------------------
# Events


def sign(key: int, kind: int, created_at: int, tags: list[list[str]], content: str) -> str:
    return dumps(KEYS[key].sign(kind, content, tags, created_at))


tag_strategy = st.sampled_from(TAG_NAMES).flatmap(
    lambda name: st.one_of(
        st.tuples(st.just(name), st.sampled_from(VALUES)),
        # a third element is never what a filter matches
        st.tuples(st.just(name), st.sampled_from(VALUES), st.sampled_from(VALUES)),
        st.tuples(st.just(name)),  # one element: not indexed
    ).map(list)
)


@dataclass(frozen=True)
class Spec:
    """An event before signing (short to print in a failing example)."""

    key: int
    kind: int
    dt: int
    tags: list[list[str]]
    expiration: str | None
    content: str

    def raw(self) -> str:
        exp = [] if self.expiration is None else [["expiration", self.expiration]]
        return sign(self.key, self.kind, BASE + self.dt, self.tags + exp, self.content)


spec_strategy = st.builds(
    Spec,
    st.integers(0, len(KEYS) - 1),
    st.sampled_from(REGULAR_KINDS) | st.sampled_from(KINDS),
    st.integers(0, SPAN - 1),
    st.lists(tag_strategy, max_size=4),
    st.none() | st.sampled_from(EXPIRATIONS),
    st.sampled_from(("", "x")),
)


def fixed_pool(seed: int = 1, size: int = 240) -> list[str]:
    """A deterministic pool for the tests that vary only the filters."""
    rng = random.Random(seed)
    raws: list[str] = []
    for _ in range(size):
        tags: list[list[str]] = []
        for _ in range(rng.randint(0, 4)):
            shape = rng.random()
            name = rng.choice(TAG_NAMES)
            if shape < 0.1:
                tags.append([name])
            elif shape < 0.25:
                tags.append([name, rng.choice(VALUES), rng.choice(VALUES)])
            else:
                tags.append([name, rng.choice(VALUES)])
        if rng.random() < 0.25:
            tags.append(["expiration", rng.choice(EXPIRATIONS)])
        raws.append(
            sign(
                rng.randrange(len(KEYS)),
                rng.choice(REGULAR_KINDS if rng.random() < 0.5 else KINDS),
                BASE + rng.randrange(SPAN),
                tags,
                rng.choice(("", "x", "y")),
            )
        )
    raws += rng.sample(raws, 10)  # duplicates
    return raws


FIXED_POOL = fixed_pool()
FIXED_EVENTS = [decode_event(raw.encode()) for raw in FIXED_POOL]


# --------------------------------------------------------------------------------------------
# Filters


@st.composite
def filter_dicts(draw: st.DrawFn, pool: Sequence[Event]) -> dict[str, Any]:
    """A filter dict; two in three are built around one event of the pool (stored, replaced
    or expired) so that they hit often, the rest are drawn freely from the alphabet."""
    anchor = draw(st.sampled_from(pool)) if pool and draw(st.integers(0, 2)) else None
    event("anchored", str(anchor is not None))

    def values(candidates: Sequence[Any], own: list[Any]) -> list[Any]:
        least = 0 if draw(st.integers(0, 7)) == 0 else 1  # an empty array matches nothing
        chosen = draw(
            st.lists(st.sampled_from(candidates), min_size=least, max_size=3, unique=True)
        )
        if own and draw(st.integers(0, 7)):
            chosen = list(dict.fromkeys([draw(st.sampled_from(own)), *chosen]))
        return chosen

    raw: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:
        raw["ids"] = values([*(e.id for e in pool), UNKNOWN_HEX], [anchor.id] if anchor else [])
    if draw(st.booleans()):
        raw["authors"] = values([*PUBKEYS, UNKNOWN_HEX], [anchor.pubkey] if anchor else [])
    if draw(st.booleans()):
        raw["kinds"] = values([*KINDS, 5], [anchor.kind] if anchor else [])
    for key, direction in (("since", -1), ("until", 1)):
        if draw(st.integers(0, 2)) == 0:
            if anchor and draw(st.booleans()):
                raw[key] = anchor.created_at + direction * draw(st.integers(0, 2))
            else:
                raw[key] = BASE + draw(st.integers(0, SPAN - 1) | st.sampled_from((-1, SPAN)))
    if draw(st.booleans()):
        raw["limit"] = draw(st.sampled_from((1, 2, 3, 5, 8, 0, LIMITS.max_limit + 1)))
    own_tags = [t for t in anchor.tags if len(t) >= 2 and t[0] in FILTER_LETTERS] if anchor else []
    letters = draw(st.lists(st.sampled_from(FILTER_LETTERS), max_size=2, unique=True))
    if own_tags and draw(st.integers(0, 2)):
        own_letters = [t[0] for t in own_tags]
        letters = draw(st.lists(st.sampled_from(own_letters), min_size=1, max_size=2, unique=True))
        if draw(st.integers(0, 3)) == 0:
            letters.append(draw(st.sampled_from(FILTER_LETTERS)))
    for letter in letters:
        raw["#" + letter] = values(VALUES, [t[1] for t in own_tags if t[0] == letter])
    return raw


def naive_match(raw: dict[str, Any], event: Event) -> bool:
    """NIP-01 read straight off the filter dict (limit aside): since/until inclusive, tag
    letters AND-ed, values of one letter OR-ed, a tag's first element its name and its
    second its value."""
    for key, value in raw.items():
        if key == "ids" and event.id not in value:
            return False
        if key == "authors" and event.pubkey not in value:
            return False
        if key == "kinds" and event.kind not in value:
            return False
        if key == "since" and event.created_at < value:
            return False
        if key == "until" and event.created_at > value:
            return False
        if key.startswith("#") and not any(
            len(tag) >= 2 and tag[0] == key[1] and tag[1] in value for tag in event.tags
        ):
            return False
    return True


# --------------------------------------------------------------------------------------------
# The model


def expires_at(event: Event) -> int | None:
    """NIP-40: the first expiration tag; a value that is not an integer means none."""
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == "expiration":
            value = tag[1]
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def newest_first(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (-e.created_at, e.id))


def model(
    universe: Sequence[Event], raws: Sequence[dict[str, Any]], filters: Sequence[Filter], now: int
) -> tuple[list[str], int]:
    """The ids a REQ returns, in order, and what a COUNT says."""
    live = [e for e in universe if (exp := expires_at(e)) is None or exp > now]
    chosen: dict[str, Event] = {}
    counted: set[str] = set()
    for raw, flt in zip(raws, filters, strict=True):
        matched = [e for e in live if matches(flt, e)]
        assert matched == [e for e in live if naive_match(raw, e)], raw
        counted.update(e.id for e in matched)
        limit = DEFAULT_LIMIT if flt.limit is None else flt.limit
        for e in newest_first(matched)[:limit]:
            chosen[e.id] = e
    return [e.id for e in newest_first(list(chosen.values()))], len(counted)


def expected_stored(raws: Sequence[str]) -> set[str]:
    """Ids NIP-01 keeps: every regular event; per address the newest, ties by lowest id."""
    kept: dict[object, Event] = {}
    for raw in raws:
        e = decode_event(raw.encode())
        cls = kind_class(e.kind)
        if cls is KindClass.REGULAR:
            key: object = e.id
        else:
            d = ""
            if cls is KindClass.ADDRESSABLE:
                d = next((t[1] for t in e.tags if len(t) >= 2 and t[0] == "d"), "")
            key = (e.pubkey, e.kind, d)
        old = kept.get(key)
        if old is None or (e.created_at, old.id) > (old.created_at, e.id):
            kept[key] = e
    return {e.id for e in kept.values()}


async def ingest(store: Store, raws: Sequence[str], batches: int = 1) -> list[IngestStatus]:
    statuses: list[IngestStatus] = []
    size = max(1, -(-len(raws) // batches))
    for start in range(0, len(raws), size):
        chunk = raws[start : start + size]
        statuses += await store.ingest([decode_event(raw.encode()) for raw in chunk], chunk)
    return statuses


async def stored_universe(store: Store) -> list[Event]:
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT raw FROM events")
    return [decode_event(row[0].encode()) for row in rows]


async def check(
    store: Store,
    universe: Sequence[Event],
    raws: Sequence[dict[str, Any]],
    now: int,
    *,
    in_hypothesis: bool = True,
) -> list[str]:
    """Store.query and Store.count against the model, for one REQ/COUNT of ``raws``; the
    ids returned."""
    filters = [parse_filter(raw, LIMITS) for raw in raws]
    expected_ids, expected_count = model(universe, raws, filters, now)
    if in_hypothesis:
        event("returned", "some" if expected_ids else "none")
    got = await store.query(filters, now)
    assert [event_id.hex() for event_id, _raw in got] == expected_ids, (raws, now)
    by_id = {e.id: e for e in universe}
    for event_id, raw in got:
        assert decode_event(raw.encode()) == by_id[event_id.hex()]
    assert await store.count(filters, now) == expected_count, (raws, now)
    return expected_ids


# --------------------------------------------------------------------------------------------
# Fixtures


class Mirrored:
    """A store whose REQs are answered by an in-memory :class:`Mirror` that follows its log
    (through a real log tail), falling back to the store where the mirror cannot tell."""

    def __init__(self, store: Store, max_events: int) -> None:
        self.store = store
        self.pool = store.pool
        self.mirror = Mirror(max_events)
        store.on_ingest = self.mirror.written
        self.tail = LogTail(store, LiveIndex(), mirror=self.mirror)
        self.answers = MirroredStore(store, self.mirror, default_limit=DEFAULT_LIMIT)

    async def ingest(self, events: Sequence[Event], raws: Sequence[str]) -> list[IngestStatus]:
        statuses = await self.store.ingest(events, raws)
        await self.tail.catch_up()
        return statuses

    async def query(self, filters: Sequence[Filter], now: int) -> list[tuple[bytes, str]]:
        await self.tail.catch_up()  # removals made with SQL by the test
        return await self.answers.query(filters, now)

    async def count(self, filters: Sequence[Filter], now: int) -> int:
        return await self.store.count(filters, now)


@pytest.fixture(
    params=[None, 2_000, "mirror", "small mirror"],
    ids=["json from the query", "small event cache", "mirror", "mirror below its horizon"],
)
async def store(db_dsn: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store that reads every event's JSON with its query, or one that reads ids and takes
    the JSON from an event cache so small (a few events) that answers mix held and read; or
    answers from an in-memory mirror holding every event, or only the newest 60 (so that
    answers reaching below its horizon go to PostgreSQL)."""
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    param = request.param
    events = EventCache(param) if isinstance(param, int) else None
    try:
        plain = Store(pool, default_limit=DEFAULT_LIMIT, events=events, partitioned=PARTITIONED)
        if isinstance(param, str):
            mirrored = Mirrored(plain, 100_000 if param == "mirror" else 60)
            await mirrored.tail.start()
            yield mirrored  # type: ignore[misc]
            if param == "mirror":
                # It holds every event and has settled after every write: it answered all.
                assert mirrored.mirror.declined == 0
        else:
            yield plain
    finally:
        await pool.close()


class Loaded:
    """A store and what it holds (not a dataclass: Hypothesis would print every event)."""

    def __init__(self, store: Store, universe: list[Event]) -> None:
        self.store = store
        self.universe = universe

    def __repr__(self) -> str:  # printed in every failing example
        return f"<FIXED_POOL: {len(self.universe)} events stored>"


@pytest.fixture
async def fixed(store: Store) -> Loaded:
    """The store holding FIXED_POOL (ingested in three batches), and what it stored."""
    await ingest(store, FIXED_POOL, batches=3)
    universe = await stored_universe(store)
    assert {e.id for e in universe} == expected_stored(FIXED_POOL)
    return Loaded(store, universe)


def examples(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


nows = st.integers(BASE - 1, BASE + SPAN + 2)


# --------------------------------------------------------------------------------------------
# Tests


async def test_fixed_pool_is_interesting(fixed: Loaded) -> None:
    """The pool exercises what the properties are about."""
    universe = fixed.universe
    assert len(universe) > 100
    assert {kind_class(e.kind) for e in universe} >= {
        KindClass.REGULAR,
        KindClass.REPLACEABLE,
        KindClass.ADDRESSABLE,
    }
    assert len(universe) < len({raw for raw in FIXED_POOL})  # some were replaced
    values = {t[1] for e in universe for t in e.tags if len(t) >= 2 and len(t[0]) == 1}
    assert set(VALUES) <= values
    assert sum(expires_at(e) is not None for e in universe) > 10


@examples(300)
@given(raw=filter_dicts(FIXED_EVENTS), now=nows)
async def test_single_filter(fixed: Loaded, raw: dict[str, Any], now: int) -> None:
    await check(fixed.store, fixed.universe, [raw], now)


MANY_KINDS = [*KINDS, *range(2, 30)]
"""More kinds than MAX_STREAMS streams, for the filters read from index entries first."""

# One filter per plan compile_query can choose, with what its SQL must then look like.
PLAN_SHAPES = [
    ({"#t": ["a"]}, ["FROM event_tags t", "AS e"], [") AS x"]),
    ({"#t": ["a"], "kinds": [7]}, ["t.kind = $"], [") AS x"]),
    ({"#t": ["a", "b", LONG_UTF8]}, ["LATERAL", "DISTINCT ON", "v.value"], ["k.kind"]),
    ({"#t": ["a"], "kinds": [7, 1301, 33401]}, ["LATERAL", "k.kind"], ["DISTINCT ON"]),
    ({"#p": ["a", "b"], "kinds": [1, 7], "limit": 3}, ["DISTINCT ON", "k.kind"], []),
    ({"#t": [*VALUES], "kinds": [*KINDS]}, ["= ANY("], ["LATERAL"]),  # 66 streams: one scan
    ({"authors": PUBKEYS, "kinds": [1, 0, 33401]}, ["a.pubkey", "k.kind"], ["event_tags"]),
    ({"authors": PUBKEYS[:2], "limit": 4}, ["a.pubkey"], ["k.kind"]),
    ({"kinds": [1, 7]}, ["k.kind"], ["a.pubkey"]),
    ({"authors": PUBKEYS[:1], "kinds": [1, 7, 30003]}, ["k.kind", "a.pubkey"], []),
    ({"authors": PUBKEYS[:1], "kinds": [1]}, ["LATERAL", "a.pubkey", "k.kind"], []),
    # 1 author x 35 kinds: past MAX_STREAMS, index entries first in two rounds under a shared
    # bound, the scan if one expired
    (
        {"authors": PUBKEYS[:1], "kinds": MANY_KINDS},
        ["i.kind = s.kind", "i.kind = f.kind", "expired"],
        ["= ANY("],
    ),
    ({"authors": PUBKEYS, "kinds": MANY_KINDS, "since": BASE + 2}, ["i.created_at >="], []),
    ({"ids": [], "kinds": [1, 7]}, ["e.id = ANY("], ["LATERAL"]),
    ({"since": BASE + 1, "until": BASE + 4}, ["e.created_at >="], ["LATERAL"]),
]


@pytest.mark.parametrize(("raw", "present", "absent"), PLAN_SHAPES)
async def test_plan_shapes(
    fixed: Loaded, raw: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    """Each plan is the one intended for its shape, and answers like the model."""
    if "ids" in raw:
        raw = {**raw, "ids": [e.id for e in fixed.universe if e.kind in (1, 7)][:5]}
    sql = compile_query(parse_filter(raw, LIMITS), BASE, 10).sql
    for fragment in present:
        assert fragment in sql, (fragment, sql)
    for fragment in absent:
        assert fragment not in sql, (fragment, sql)
    returned = [
        await check(fixed.store, fixed.universe, [raw], now, in_hypothesis=False)
        for now in (BASE - 1, BASE + 3)
    ]
    assert returned[0], "the pool has no match for this shape: the test would prove nothing"


@examples(150)
@given(
    authors=st.lists(st.sampled_from(PUBKEYS), min_size=1, unique=True),
    kinds=st.lists(st.sampled_from(MANY_KINDS), min_size=12, unique=True),
    since=st.none() | st.integers(BASE, BASE + SPAN),
    until=st.none() | st.integers(BASE, BASE + SPAN),
    limit=st.none() | st.integers(0, 40),
    now=nows,
)
async def test_many_keys_from_index_entries(
    fixed: Loaded,
    authors: list[str],
    kinds: list[int],
    since: int | None,
    until: int | None,
    limit: int | None,
    now: int,
) -> None:
    """Filters past MAX_STREAMS author x kind pairs pick their candidates without looking at
    expiration; with a quarter of the pool expiring, the answers must still be the model's
    (the scan runs instead whenever a candidate had expired)."""
    raw: dict[str, Any] = {"authors": authors, "kinds": kinds}
    raw |= {
        k: v for k, v in (("since", since), ("until", until), ("limit", limit)) if v is not None
    }
    query = compile_query(parse_filter(raw, LIMITS), now, limit if limit is not None else 10)
    assert (query.unless_expired is not None) is (len(authors) * len(kinds) > MAX_STREAMS)
    await check(fixed.store, fixed.universe, [raw], now)


@examples(250)
@given(raws=st.lists(filter_dicts(FIXED_EVENTS), min_size=1, max_size=3), now=nows)
async def test_filter_union(fixed: Loaded, raws: list[dict[str, Any]], now: int) -> None:
    await check(fixed.store, fixed.universe, raws, now)


@examples(40)
@given(
    specs=st.lists(spec_strategy, min_size=6, max_size=30),
    repeat=st.lists(st.integers(0, 29), max_size=3),
    batches=st.integers(1, 3),
    data=st.data(),
)
async def test_random_pool(
    store: Store, specs: list[Spec], repeat: list[int], batches: int, data: st.DataObject
) -> None:
    """A fresh pool per example (in one to three batches, some events sent twice), then a
    few REQ/COUNTs against it."""
    async with store.pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM events; DELETE FROM event_tags;"
            " DELETE FROM deleted_events; DELETE FROM deleted_addresses"
        )
    pool = [spec.raw() for spec in specs]
    raws = pool + [pool[i] for i in repeat if i < len(pool)]
    await ingest(store, raws, batches)
    universe = await stored_universe(store)
    assert {e.id for e in universe} == expected_stored(raws)
    events = [decode_event(raw.encode()) for raw in pool]
    for _ in range(4):
        filters = data.draw(st.lists(filter_dicts(events), min_size=1, max_size=3), label="filters")
        await check(store, universe, filters, data.draw(nows, label="now"))


async def test_replaced_events_leave_no_tag_rows(fixed: Loaded) -> None:
    async with fixed.store.pool.acquire() as conn:
        orphans = await conn.fetchval(
            "SELECT count(*) FROM event_tags t"
            " WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = t.event_id)"
        )
    assert orphans == 0


async def test_nul_in_d_tag_of_addressable_event(store: Store) -> None:
    """U+0000 in a d tag (events.d_tag and event_tags are text) neither fails the batch nor
    loses the event."""
    raw = sign(0, 30003, BASE, [["d", NUL]], "")
    newer = sign(0, 30003, BASE + 1, [["d", NUL]], "")
    assert await ingest(store, [raw, newer]) == [IngestStatus.STORED, IngestStatus.STORED]
    got = await store.query([parse_filter({"#d": [NUL]}, LIMITS)], BASE)
    assert [r for _id, r in got] == [newer]


async def test_a_follow_feed_where_one_author_fills_the_page(store: Store) -> None:
    """Past MAX_STREAMS keys each key first gives a couple of index entries; one author whose
    notes are all newer than everyone else's must still fill the whole page from their own
    (the second round reads down to the bound the first round found)."""
    prolific = [sign(0, 1, BASE + 100 + i, [], f"p{i}") for i in range(12)]
    others = [Keys(100 + n) for n in range(8)]
    older = [dumps(k.sign(1, f"{n}", [], BASE + n)) for k in others for n in range(3)]
    await ingest(store, prolific + older)
    universe = await stored_universe(store)
    absent = [Keys(200 + n).pubkey for n in range(MAX_STREAMS)]
    authors = [PUBKEYS[0], *(k.pubkey for k in others), *absent]
    for limit in (10, 12, 13, 40):
        raw = {"authors": authors, "kinds": [1], "limit": limit}
        assert compile_query(parse_filter(raw, LIMITS), BASE, limit).unless_expired is not None
        got = await check(store, universe, [raw], BASE + 200, in_hypothesis=False)
        assert len(got) == min(limit, 36)
