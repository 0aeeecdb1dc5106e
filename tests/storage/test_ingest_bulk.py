"""The set-based ingest (fitrelay_ingest, migration 0005) against the per-event loop it
replaces (fitrelay_ingest_serial, the loop of 0002 unchanged): differential tests.

Random sequences of batches go through :meth:`Store.ingest` into one database and through
``fitrelay_ingest_serial`` into another. After every batch the statuses must be equal, and so
must everything ingest writes: events (with their exact ``seq``), event_tags, both tombstone
tables and the removal log (with its exact ``seq``, so insertions and removals interleave the
same way); at the end, the notifications each database sent. The alphabet is small (two
authors, two addresses per kind, three timestamps, short contents) so batches are full of
duplicates, replacements with equal and different ``created_at``, deletions by ``e`` and by
``a`` of events earlier or later in the same batch or in other batches (or never sent), of
other authors' events and of other deletions.

``ingest_args`` itself is checked against the straightforward version it replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from relay.nostr.event import Event, KindClass, d_tag, decode_event, expiration, kind_class
from relay.storage.postgres import SESSION_SETTINGS, Store, create_pool, ingest_args
from relay.storage.sqlfilter import tag_key
from tests.signer import Keys

KEYS = [Keys(seed) for seed in (21, 22)]
REGULAR_KINDS = (1, 1301)
REPLACEABLE_KINDS = (0, 10002)
ADDRESSABLE_KINDS = (33401, 30023)
# Few addresses per author (one replaceable, two addressable: d "p" and d "", which an event
# without a d tag shares), so versions of one address meet often.
REPLACEABLE = 10002
ADDRESSABLE = 33401
D_VALUES = ("p", "")
BASE = 1_700_000_000
BULK = "fitrelay_ingest_bulk"
SERIAL = "fitrelay_ingest_serial"
SMALL_BATCH = 24  # fitrelay_ingest hands batches smaller than this to fitrelay_ingest_serial
_PARAMS = ", ".join(f"${i}" for i in range(1, 16))

# Everything fitrelay_ingest writes, in a stable order (seq included where there is one).
SNAPSHOT = {
    "events": "SELECT seq, id, pubkey, kind, created_at, d_tag, expires_at, raw FROM events"
    " ORDER BY seq",
    "event_tags": "SELECT event_id, name, value, kind, pubkey, created_at FROM event_tags"
    " ORDER BY event_id, name, value",
    "deleted_events": "SELECT id, pubkey, deletion_id FROM deleted_events ORDER BY id, pubkey",
    "deleted_addresses": "SELECT pubkey, kind, d_tag, deleted_up_to, deletion_id"
    " FROM deleted_addresses ORDER BY pubkey, kind, d_tag",
    "removed_events": "SELECT seq, id, pubkey, kind, d_tag FROM removed_events ORDER BY seq",
}
RESET = (
    "TRUNCATE events, event_tags, deleted_events, deleted_addresses, removed_events"
    " RESTART IDENTITY"
)


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Note:
    """A regular, replaceable or addressable event before signing."""

    key: int
    kind: int
    dt: int
    d: str | None  # the d tag of an addressable event (None: no d tag at all)
    content: str
    expires: bool

    def tags(self, universe: Sequence[str]) -> list[list[str]]:
        tags = [["t", "x"]]
        if self.d is not None:
            tags.insert(0, ["d", self.d])
        if self.expires:
            tags.append(["expiration", str(BASE + 1_000_000)])
        return tags


@dataclass(frozen=True)
class Deletion:
    """A kind 5 naming events of the universe by index (any author's, deletions too) and
    addresses ``(kind, author, d)``."""

    key: int
    dt: int
    targets: tuple[int, ...]
    addresses: tuple[tuple[int, int, str], ...]

    kind = 5
    content = ""

    def tags(self, universe: Sequence[str]) -> list[list[str]]:
        tags = [["e", msgspec.json.decode(universe[i])["id"]] for i in self.targets]
        for kind, key, d in self.addresses:
            tags.append(["a", f"{kind}:{KEYS[key].pubkey}:{d}"])
        tags.append(["e", hashlib.sha256(b"never sent").hexdigest()])
        return tags


@dataclass(frozen=True)
class Scenario:
    specs: tuple[Note | Deletion, ...]
    batches: tuple[tuple[int, ...], ...]  # indexes into specs, in arrival order

    def raws(self) -> list[str]:
        """Signed events, in the order of specs (a deletion names only earlier ones)."""
        universe: list[str] = []
        for spec in self.specs:
            signed = KEYS[spec.key].sign(
                spec.kind, spec.content, spec.tags(universe), BASE + spec.dt
            )
            universe.append(msgspec.json.encode(signed).decode())
        return universe


notes = st.one_of(
    st.builds(
        Note,
        key=st.integers(0, 1),
        kind=st.sampled_from(REGULAR_KINDS),
        dt=st.integers(0, 2),
        d=st.none(),
        content=st.sampled_from(("a", "b")),
        expires=st.booleans(),
    ),
    st.builds(
        Note,
        key=st.integers(0, 1),
        kind=st.just(REPLACEABLE),
        dt=st.integers(0, 2),
        d=st.none(),
        content=st.sampled_from(("a", "b")),
        expires=st.just(False),
    ),
    st.builds(
        Note,
        key=st.integers(0, 1),
        kind=st.just(ADDRESSABLE),
        dt=st.integers(0, 2),
        d=st.sampled_from(D_VALUES) | st.none(),
        content=st.sampled_from(("a", "b", "c")),
        expires=st.booleans(),
    ),
)


def deletions(earlier: int) -> st.SearchStrategy[Deletion]:
    return st.builds(
        Deletion,
        key=st.integers(0, 1),
        dt=st.integers(0, 3),
        targets=st.lists(st.integers(0, earlier - 1), max_size=3).map(tuple),
        addresses=st.lists(
            st.tuples(
                st.sampled_from((ADDRESSABLE, REPLACEABLE)),
                st.integers(0, 1),
                st.sampled_from(D_VALUES),
            ),
            max_size=2,
        ).map(tuple),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    specs: list[Note | Deletion] = list(draw(st.lists(notes, min_size=1, max_size=12)))
    for _ in range(draw(st.integers(0, 4))):
        specs.append(draw(deletions(len(specs))))
    size = draw(st.sampled_from((40, 20, 10, 5, 1)))
    order = draw(st.lists(st.integers(0, len(specs) - 1), min_size=(size + 1) // 2, max_size=size))
    count = draw(st.sampled_from((3, 1, 2, 4, 5)))
    cuts = draw(st.lists(st.integers(1, len(order)), min_size=count - 1, max_size=count - 1))
    bounds = [0, *sorted(cuts), len(order)]
    batches = tuple(tuple(order[a:b]) for a, b in itertools.pairwise(bounds) if b > a)
    return Scenario(tuple(specs), batches)


# --------------------------------------------------------------------------------------------
# The two databases


Ingest = Callable[[Sequence[str]], Awaitable[list[int]]]


class Side:
    """One database, a way into it, and the notifications it sent."""

    def __init__(
        self, conn: asyncpg.Connection[Any], listener: asyncpg.Connection[Any], ingest: Ingest
    ) -> None:
        self.conn = conn
        self.listener = listener
        self.ingest = ingest
        self.notified: list[str] = []

    def note(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.notified.append(payload)

    async def read(self) -> dict[str, list[tuple[Any, ...]]]:
        return {name: [tuple(r) for r in await self.conn.fetch(q)] for name, q in SNAPSHOT.items()}

    async def flush_notifications(self) -> list[str]:
        # The notifications of a committed transaction reach an idle listener before the
        # answer to its next query.
        await self.listener.fetchval("SELECT 1")
        await self.listener.fetchval("SELECT 1")
        return self.notified

    async def reset(self) -> None:
        await self.conn.execute(RESET)
        await self.flush_notifications()
        self.notified.clear()


def _through(conn: asyncpg.Connection[Any], function: str) -> Ingest:
    sql = f"SELECT {function}({_PARAMS})"

    async def ingest(raws: Sequence[str]) -> list[int]:
        events = [decode_event(raw.encode()) for raw in raws]
        return list(await conn.fetchval(sql, *ingest_args(events, raws)))

    return ingest


def _through_store(store: Store) -> Ingest:
    async def ingest(raws: Sequence[str]) -> list[int]:
        events = [decode_event(raw.encode()) for raw in raws]
        return [int(status) for status in await store.ingest(events, raws)]

    return ingest


@contextlib.asynccontextmanager
async def _sides(db_dsn: str, other_dsn: str, via_store: bool) -> AsyncIterator[tuple[Side, Side]]:
    """The side under test (fitrelay_ingest_bulk, or Store.ingest with fitrelay_ingest, on a
    connection with the relay's settings) and the reference (fitrelay_ingest_serial)."""
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        conns = []
        for dsn in (db_dsn, other_dsn, db_dsn, other_dsn):
            conns.append(await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS))
            stack.push_async_callback(conns[-1].close)
        tested = (
            _through_store(Store(pool, default_limit=10)) if via_store else _through(conns[0], BULK)
        )
        sides = (
            Side(conns[0], conns[2], tested),
            Side(conns[1], conns[3], _through(conns[1], SERIAL)),
        )
        for side in sides:
            await side.listener.add_listener("fitrelay_events", side.note)
        yield sides


@pytest.fixture
async def bulk_sides(db_dsn: str, other_dsn: str) -> AsyncIterator[tuple[Side, Side]]:
    async with _sides(db_dsn, other_dsn, via_store=False) as sides:
        yield sides


@pytest.fixture
async def store_sides(db_dsn: str, other_dsn: str) -> AsyncIterator[tuple[Side, Side]]:
    async with _sides(db_dsn, other_dsn, via_store=True) as sides:
        yield sides


async def run_both(sides: tuple[Side, Side], batches: Iterable[Sequence[str]]) -> None:
    """Every batch into both databases; the same statuses and rows after each, and the same
    notifications in the end."""
    tested, reference = sides
    for number, batch in enumerate(batches):
        got = await tested.ingest(batch)
        expected = await reference.ingest(batch)
        assert got == expected, f"statuses of batch {number}"
        got_rows, expected_rows = await tested.read(), await reference.read()
        for table in SNAPSHOT:
            assert got_rows[table] == expected_rows[table], f"{table} after batch {number}"
    assert await tested.flush_notifications() == await reference.flush_notifications()


def _settings(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


# --------------------------------------------------------------------------------------------
# Tests

# A note, two versions of an address (the later one older), a deletion of the note and of
# the address, and the note again: the deletion follows its targets in the same batch.
_DELETION_AFTER = Scenario(
    (
        Note(0, 1, 0, None, "a", False),
        Note(0, 33401, 1, "p", "a", False),
        Note(0, 33401, 0, "p", "b", False),
        Deletion(0, 3, (0,), ((33401, 0, "p"),)),
    ),
    ((0, 1, 2, 3, 0, 1),),
)
# The same deletion arriving first, then its targets, then a duplicate across batches.
_DELETION_BEFORE = Scenario(_DELETION_AFTER.specs, ((3, 0, 1), (2, 0)))
# Equal created_at: the lowest id wins, in one batch and across batches (one of the two
# orders sends the winner second); a regular event twice in one batch. (A batch of one event
# goes through the loop itself, so the later batches carry a regular event too.)
_TIE_SPECS = (
    Note(1, 30023, 1, "q", "a", False),
    Note(1, 30023, 1, "q", "b", False),
    Note(1, 1301, 1, None, "a", True),
)
_TIE = Scenario(_TIE_SPECS, ((2, 0, 2, 1, 2), (1, 0)))
_TIE_ACROSS = Scenario(_TIE_SPECS, ((0,), (1, 2), (0, 2)))
_TIE_ACROSS_2 = Scenario(_TIE_SPECS, ((1,), (0, 2), (1, 2)))
# The stored version is deleted by id in the batch that brings an older one: the mark rises
# to the deleted version's created_at before the older one arrives (status 3, not 4).
_STORED_VERSION_DELETED = Scenario(
    (
        Note(0, 33401, 2, "p", "a", False),
        Note(0, 33401, 1, "p", "b", False),
        Deletion(0, 3, (0,), ()),
    ),
    ((0,), (2, 1)),
)
# A version exactly as old as the mark left by an address deletion stays deleted.
_AT_THE_MARK = Scenario(
    (
        Note(0, 33401, 2, "p", "a", False),
        Deletion(0, 2, (), ((33401, 0, "p"),)),
        Note(0, 1, 0, None, "a", False),
    ),
    ((1,), (0, 2)),
)


@_settings(150)
@given(scenario=scenarios())
@example(scenario=_DELETION_AFTER)
@example(scenario=_DELETION_BEFORE)
@example(scenario=_TIE)
@example(scenario=_TIE_ACROSS)
@example(scenario=_TIE_ACROSS_2)
@example(scenario=_STORED_VERSION_DELETED)
@example(scenario=_AT_THE_MARK)
async def test_bulk_ingest_equals_the_per_event_loop(
    bulk_sides: tuple[Side, Side], scenario: Scenario
) -> None:
    for side in bulk_sides:
        await side.reset()
    raws = scenario.raws()
    event("batches", str(len(scenario.batches)))
    event("largest batch", f"{max(len(b) for b in scenario.batches) // 5 * 5}+")
    await run_both(bulk_sides, [[raws[i] for i in batch] for batch in scenario.batches])


def _large_batches(seed: int, batches: int, size: int) -> Iterator[list[str]]:
    """Batches shaped like real traffic (mostly regular events, a tenth addressable with
    replacements, a few deletions, resent events), larger than Hypothesis draws."""
    rng = random.Random(seed)
    keys = [Keys(100 + i) for i in range(6)]
    sent: list[tuple[int, str, str]] = []  # (author, id, raw)
    addresses: list[tuple[int, int, str]] = []
    clock = BASE
    for _ in range(batches):
        batch: list[str] = []
        while len(batch) < size:
            clock += 1
            author = rng.randrange(len(keys))
            roll = rng.random()
            if roll < 0.03 and sent:
                targets = rng.sample(sent[-3 * size :], min(len(sent), rng.randint(1, 3)))
                author = targets[0][0] if rng.random() < 0.8 else author
                tags = [["e", event_id] for _, event_id, _ in targets]
                if addresses and rng.random() < 0.5:
                    kind, owner, d = rng.choice(addresses)
                    author = owner
                    tags.append(["a", f"{kind}:{keys[owner].pubkey}:{d}"])
                signed = keys[author].sign(5, "", tags, clock)
            elif roll < 0.15:
                if addresses and rng.random() < 0.4:
                    kind, author, d = rng.choice(addresses)
                else:
                    kind, d = rng.choice(ADDRESSABLE_KINDS), f"d{clock}"
                    addresses.append((kind, author, d))
                dt = clock - rng.choice((0, 0, 1, 2, 50))
                signed = keys[author].sign(kind, rng.choice("xyz"), [["d", d], ["t", "w"]], dt)
            elif roll < 0.18 and sent:
                batch.append(rng.choice(sent)[2])
                continue
            else:
                tags = [["t", rng.choice("abc")], ["p", keys[rng.randrange(6)].pubkey]]
                signed = keys[author].sign(rng.choice(REGULAR_KINDS), f"n{clock}", tags, clock)
            raw = msgspec.json.encode(signed).decode()
            sent.append((author, signed["id"], raw))
            batch.append(raw)
        yield batch


async def test_large_mixed_batches_equal_the_per_event_loop(
    store_sides: tuple[Side, Side],
) -> None:
    """Through Store.ingest, as the writer and the importer store."""
    await run_both(store_sides, _large_batches(seed=7, batches=4, size=400))
    rows = await store_sides[0].read()
    assert len(rows["events"]) > 1000
    assert rows["removed_events"], "some events were replaced or deleted"
    assert rows["deleted_addresses"]


async def test_batches_of_every_size_equal_the_per_event_loop(
    store_sides: tuple[Side, Side],
) -> None:
    """Small batches take the loop itself, larger ones the bulk path: the log stays one."""
    raws = [raw for batch in _large_batches(seed=8, batches=3, size=100) for raw in batch]
    sizes = [1, 1, 2, 3, SMALL_BATCH - 1, SMALL_BATCH, SMALL_BATCH + 1, 1, 60, 1, 100]
    cuts = list(itertools.accumulate(sizes, initial=0))
    assert cuts[-1] <= len(raws)
    await run_both(store_sides, [raws[a:b] for a, b in itertools.pairwise(cuts)])


# Arrays no real batch can produce (one id with two authors or kinds, an address on a
# regular kind, e tags on an event that is not a deletion): the function is exact for any
# input, not only for verified events.
_ID_POOL = [bytes([i]) * 32 for i in range(5)]
_PUBKEY_POOL = [bytes([0xA0 + i]) * 32 for i in range(2)]
raw_events = st.tuples(
    st.integers(0, len(_ID_POOL) - 1),
    st.integers(0, len(_PUBKEY_POOL) - 1),
    st.sampled_from((1, 5, REPLACEABLE, ADDRESSABLE)),
    st.integers(0, 2),
    st.sampled_from((None, "", "p")),
    st.lists(st.sampled_from((("t", "x"), ("e", "y"), ("d", "p"))), max_size=2, unique=True),
    st.lists(st.integers(0, len(_ID_POOL) - 1), max_size=2),
    st.lists(st.tuples(st.sampled_from((REPLACEABLE, ADDRESSABLE)), st.sampled_from(D_VALUES))),
)


def _arrays(batch: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in range(15)]
    for position, (i, p, kind, dt, dtag, tags, targets, addresses) in enumerate(batch, 1):
        for column, value in enumerate(
            (_ID_POOL[i], _PUBKEY_POOL[p], kind, BASE + dt, dtag, None, f"raw {position}")
        ):
            out[column].append(value)
        for name, value in tags:
            out[7].append(position)
            out[8].append(name)
            out[9].append(value)
        for target in targets:
            out[10].append(position)
            out[11].append(_ID_POOL[target])
        for target_kind, target_d in addresses:
            out[12].append(position)
            out[13].append(target_kind)
            out[14].append(target_d)
    return out


@_settings(150)
@given(
    batches=st.lists(
        st.lists(raw_events, min_size=1, max_size=12).map(tuple), min_size=1, max_size=4
    )
)
@example(  # one id, two authors: the first copy has a tombstone of its author, the second not
    batches=[
        ((1, 0, 5, 0, None, [], [0], []),),
        (
            (0, 0, 1, 0, None, [], [], []),
            (0, 1, 1, 0, None, [], [], []),
            (0, 1, 1, 0, None, [], [], []),
        ),
    ]
)
@example(  # a regular event whose id is stored at an address a replacement in its batch empties
    batches=[
        ((0, 1, 1, 0, "", [], [], []),),
        (
            (0, 0, 1, 0, None, [], [], []),
            (1, 1, 1, 1, "", [], [], []),
            (0, 0, 1, 0, None, [], [], []),
        ),
    ]
)
async def test_bulk_ingest_equals_the_loop_on_any_arrays(
    bulk_sides: tuple[Side, Side], batches: list[tuple[tuple[Any, ...], ...]]
) -> None:
    tested, reference = bulk_sides
    for side in bulk_sides:
        await side.reset()
    for number, batch in enumerate(batches):
        arrays = _arrays(batch)
        got = await tested.conn.fetchval(f"SELECT {BULK}({_PARAMS})", *arrays)
        expected = await reference.conn.fetchval(f"SELECT {SERIAL}({_PARAMS})", *arrays)
        assert got == expected, f"statuses of batch {number}"
        assert await tested.read() == await reference.read(), f"rows after batch {number}"


async def test_bulk_ingest_plans_each_statement_afresh(db_dsn: str) -> None:
    """Relay connections force custom plans already; fitrelay_ingest_bulk does not depend on
    the caller for that (a generic plan made while a table is small is kept as it grows)."""
    conn = await asyncpg.connect(db_dsn)
    try:
        config = await conn.fetchval(
            "SELECT proconfig FROM pg_proc WHERE proname = 'fitrelay_ingest_bulk'"
        )
    finally:
        await conn.close()
    assert config == ["plan_cache_mode=force_custom_plan", "jit=off"]


# --------------------------------------------------------------------------------------------
# ingest_args


def _reference_ingest_args(events: Sequence[Event], raws: Sequence[str]) -> list[object]:
    """ingest_args as first written: one plain pass per field."""
    hex64 = set("0123456789abcdef")
    out: list[list[Any]] = [[] for _ in range(15)]
    for position, ev in enumerate(events, start=1):
        out[0].append(bytes.fromhex(ev.id))
        out[1].append(bytes.fromhex(ev.pubkey))
        out[2].append(ev.kind)
        out[3].append(ev.created_at)
        cls = kind_class(ev.kind)
        if cls is KindClass.REPLACEABLE:
            out[4].append("")
        elif cls is KindClass.ADDRESSABLE:
            out[4].append(tag_key(d_tag(ev)))
        else:
            out[4].append(None)
        out[5].append(expiration(ev))
        seen: set[tuple[str, str]] = set()
        for tag in ev.tags:
            if len(tag) >= 2 and len(tag[0]) == 1 and tag[0].isascii() and tag[0].isalpha():
                pair = (tag[0], tag_key(tag[1]))
                if pair not in seen:
                    seen.add(pair)
                    out[7].append(position)
                    out[8].append(pair[0])
                    out[9].append(pair[1])
        if ev.kind != 5:
            continue
        for tag in ev.tags:
            if len(tag) >= 2 and tag[0] == "e" and len(tag[1]) == 64 and set(tag[1]) <= hex64:
                out[10].append(position)
                out[11].append(bytes.fromhex(tag[1]))
        for tag in ev.tags:
            if len(tag) < 2 or tag[0] != "a":
                continue
            parts = tag[1].split(":", 2)
            if len(parts) != 3 or parts[1] != ev.pubkey or not parts[0].isdigit():
                continue
            target = kind_class(int(parts[0]))
            if target in (KindClass.REPLACEABLE, KindClass.ADDRESSABLE):
                out[12].append(position)
                out[13].append(int(parts[0]))
                out[14].append("" if target is KindClass.REPLACEABLE else tag_key(parts[2]))
    out[6] = list(raws)
    return list(out)


_PUBKEY = KEYS[0].pubkey
_TEXT = st.sampled_from(
    (
        "",
        "x",
        "d",
        "e",
        "a",
        "A",
        "é",
        "٣",
        "ab",
        "\x00",
        "a\x00b",
        "\x01x",
        "\t",
        " ",
        "y" * 200,
        "y" * 201,
        "é" * 100,
        "é" * 101,
        "12",
        "\uff11\uff12",  # full-width digits: isdigit() but not ASCII
        "-5",
        "9" * 16,
        "9" * 17,
        "expiration",
        hashlib.sha256(b"t").hexdigest(),
        hashlib.sha256(b"t").hexdigest().upper(),
        f"33401:{_PUBKEY}:p",
        f"10002:{_PUBKEY}:",
        f"1:{_PUBKEY}:x",
        f"33401:{KEYS[1].pubkey}:p",
        f"x:{_PUBKEY}:p",
        f"30023:{_PUBKEY}:a:b",
        f"33401:{_PUBKEY}:" + "z" * 300,
    )
)
_tags = st.lists(st.lists(_TEXT, max_size=3), max_size=8)


@settings(max_examples=400, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from((1, 5, 0, 3, 10002, 20001, 30023, 33401, 40000)), _tags),
        max_size=6,
    )
)
def test_ingest_args_is_unchanged(shapes: list[tuple[int, list[list[str]]]]) -> None:
    events = [Event("00" * 32, _PUBKEY, 1, kind, tags, "", "00" * 64) for kind, tags in shapes]
    raws = [f"raw {i}" for i in range(len(events))]
    assert ingest_args(events, raws) == _reference_ingest_args(events, raws)
