"""The in-memory mirror: what it answers, what it leaves to PostgreSQL, and how it follows
the log of a running relay.

Whether its answers are right for every filter is the property tests' part
(tests/property/test_filter_sql.py runs every property against a mirrored store, one holding
everything and one holding only the newest events); these tests pin the rules around it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import Filter, parse_filter
from relay.nostr.limits import Limits
from relay.server.live import LiveIndex, LogTail
from relay.storage.mirror import Mirror
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys, dumps

LIMITS = Limits()
ALICE, BOB = Keys(31), Keys(32)
T0 = 1_700_000_000


def signed(keys: Keys, kind: int, created_at: int, tags: list[list[str]] | None = None) -> str:
    return dumps(keys.sign(kind, f"{kind}@{created_at}", tags or [], created_at))


def events(raws: list[str]) -> list[tuple[Event, str]]:
    return [(decode_event(raw.encode()), raw) for raw in raws]


def flt(**fields: Any) -> list[Filter]:
    return [parse_filter(fields, LIMITS)]


def created(rows: list[tuple[bytes, str]] | None) -> list[int] | None:
    if rows is None:
        return None
    return [decode_event(raw.encode()).created_at for _id, raw in rows]


def settled(mirror: Mirror, raws: list[str], removed: list[bytes] | None = None) -> Mirror:
    mirror.apply(events(raws), removed or [], settles=True, began_after=mirror.writes)
    return mirror


def test_below_the_horizon_goes_to_the_database() -> None:
    """Past its bound the mirror drops its oldest tenth and answers only what it can prove
    whole: a limit filled above the horizon, a window starting at or above it, ids it holds."""
    raws = [signed(ALICE if n % 2 else BOB, 1, T0 + n, [["t", "run"]]) for n in range(30)]
    mirror = settled(Mirror(10), raws)
    assert len(mirror) == 9 and mirror.horizon == T0 + 21
    assert created(mirror.answer(flt(kinds=[1], limit=5), T0, 100)) == [
        T0 + n for n in (29, 28, 27, 26, 25)
    ]
    assert created(mirror.answer(flt(**{"#t": ["run"]}, limit=9), T0, 100)) == list(
        range(T0 + 29, T0 + 20, -1)
    )
    assert mirror.answer(flt(kinds=[1], limit=10), T0, 100) is None
    assert created(mirror.answer(flt(kinds=[1], since=T0 + 25, limit=50), T0, 100)) == list(
        range(T0 + 29, T0 + 24, -1)
    )
    assert mirror.answer(flt(kinds=[1], since=T0 + 20, limit=50), T0, 100) is None
    newest, oldest = decode_event(raws[29].encode()).id, decode_event(raws[0].encode()).id
    assert created(mirror.answer(flt(ids=[newest]), T0, 100)) == [T0 + 29]
    assert mirror.answer(flt(ids=[newest, oldest]), T0, 100) is None
    # An event older than the horizon arriving later is not held (it would leave a gap).
    settled(mirror, [signed(ALICE, 1, T0 + 3)])
    assert len(mirror) == 9
    assert mirror.answered == 4 and mirror.declined == 3


def test_a_write_of_this_process_waits_for_a_settling_snapshot() -> None:
    mirror = settled(Mirror(100), [signed(ALICE, 1, T0)])
    assert mirror.answer(flt(kinds=[1]), T0, 100) is not None
    mirror.written()  # the writer's batch, before its OK
    assert mirror.answer(flt(kinds=[1]), T0, 100) is None
    before = mirror.writes - 1  # a snapshot that began before the write proves nothing
    mirror.apply([], [], settles=True, began_after=before)
    assert mirror.answer(flt(kinds=[1]), T0, 100) is None
    mirror.apply(events([signed(ALICE, 1, T0 + 1)]), [], settles=False, began_after=mirror.writes)
    assert mirror.answer(flt(kinds=[1]), T0, 100) is None  # a stretch of a longer snapshot
    mirror.apply([], [], settles=True, began_after=mirror.writes)
    assert created(mirror.answer(flt(kinds=[1]), T0, 100)) == [T0 + 1, T0]


def test_removal_leaves_no_trace_and_expiry_is_read_at_query_time() -> None:
    first = signed(ALICE, 30003, T0, [["d", "plan"], ["t", "legs"]])
    expiring = signed(BOB, 1, T0 + 1, [["expiration", str(T0 + 10)]])
    mirror = settled(Mirror(100), [first, expiring])
    first_id = bytes.fromhex(decode_event(first.encode()).id)
    settled(mirror, [], [first_id])
    for query in (
        {"#d": ["plan"]},
        {"#t": ["legs"]},
        {"kinds": [30003]},
        {"authors": [ALICE.pubkey]},
    ):
        assert mirror.answer(flt(**query), T0, 100) == []
    assert created(mirror.answer(flt(kinds=[1]), T0 + 9, 100)) == [T0 + 1]
    assert mirror.answer(flt(kinds=[1]), T0 + 10, 100) == []
    assert mirror._kinds.keys() == {1}  # the emptied streams are gone


def test_a_filter_on_a_tag_it_does_not_index_goes_to_the_database() -> None:
    mirror = settled(Mirror(100), [signed(ALICE, 1301, T0, [["exercise", "x"]])])
    multi = Filter(tags=(("exercise", frozenset({"x"})),))
    assert mirror.answer([multi], T0, 100) is None


async def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_running_relay_answers_from_its_mirror(start_relay: Any) -> None:
    """Through the relay: a REQ right after the connection's own write sees it, whether the
    mirror or PostgreSQL answers; once the tail has settled the mirror answers, and a
    replacement and a deletion reach it through the log."""
    relay = await start_relay(relay_config())
    mirror: Mirror = relay.mirror
    client = await RawClient.open(url_of(relay))
    try:
        old = ALICE.sign(0, "old name", [], T0)
        new = ALICE.sign(0, "new name", [], T0 + 1)
        note = ALICE.sign(1, "a note", [["t", "mirror"]], T0 + 2)
        for event in (old, new, note):
            assert (await client.publish(event))[2] is True
            answer = await client.req("own", {"ids": [event["id"]]})
            assert [e["id"] for e in answer] == [event["id"]]
        await wait_for(lambda: mirror.settled and mirror.covered >= mirror.writes)
        answered = mirror.answered
        assert [
            e["id"] for e in await client.req("p", {"kinds": [0], "authors": [ALICE.pubkey]})
        ] == [new["id"]]
        deletion = ALICE.sign(5, "", [["e", note["id"]]], T0 + 3)
        assert (await client.publish(deletion))[2] is True
        assert await client.req("gone", {"#t": ["mirror"]}) == []
        await wait_for(lambda: mirror.settled and mirror.covered >= mirror.writes)
        assert await client.req("still", {"#t": ["mirror"]}) == []
        assert mirror.answered >= answered + 2
    finally:
        await client.close()


async def test_an_answer_larger_than_the_clients_room_still_comes_whole(start_relay: Any) -> None:
    """A mirror answer that fits the client's room is sent in the REQ's own turn; one that
    does not waits for room a chunk at a time. Both come whole, newest first, then EOSE, and
    an event published after the EOSE arrives live, once."""
    relay = await start_relay(relay_config(answer_buffer_bytes=2_000))
    mirror: Mirror = relay.mirror
    client = await RawClient.open(url_of(relay))
    try:
        notes = [BOB.sign(1, "x" * 400, [["t", "room"]], T0 + i) for i in range(12)]
        for note in notes:
            assert (await client.publish(note))[2] is True
        await wait_for(lambda: mirror.settled and mirror.covered >= mirror.writes)
        answered = mirror.answered
        newest_first = [n["id"] for n in reversed(notes)]
        small = await client.req("small", {"#t": ["room"], "limit": 2})
        assert [e["id"] for e in small] == newest_first[:2]
        large = await client.req("large", {"#t": ["room"]})
        assert [e["id"] for e in large] == newest_first
        assert mirror.answered == answered + 2
        late = BOB.sign(1, "late", [["t", "room"]], T0 + 100)
        publisher = await RawClient.open(url_of(relay))
        try:
            assert (await publisher.publish(late))[2] is True
        finally:
            await publisher.close()
        got = [await client.expect("EVENT"), await client.expect("EVENT")]
        assert sorted(m[1] for m in got) == ["large", "small"]
        assert [m[2]["id"] for m in got] == [late["id"], late["id"]]
    finally:
        await client.close()


async def test_an_event_that_does_not_decode_is_passed_once_and_ends_the_mirror(
    db_dsn: str,
) -> None:
    """A stored event whose JSON does not decode (written by something else than the relay)
    makes the mirror give up, so PostgreSQL answers from then on; the tail's position goes
    past it, so it is not read again on every wake."""
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        store = Store(pool, default_limit=100)
        mirror = Mirror(1_000)
        tail = LogTail(store, LiveIndex(), mirror=mirror)
        await tail.start()
        raw = signed(ALICE, 1, T0)
        assert await store.ingest([decode_event(raw.encode())], [raw]) == [IngestStatus.STORED]
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE events SET raw = 'not json' WHERE seq = (SELECT max(seq) FROM events)"
            )
        await tail.catch_up()
        assert tail.position == await store.head_seq()
        assert mirror.broken and mirror.answer(flt(kinds=[1]), T0, 100) is None
    finally:
        await pool.close()
