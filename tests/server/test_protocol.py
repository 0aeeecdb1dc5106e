"""NIP-01, 09, 40, 45, 70 over real WebSocket connections to a relay on real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import pytest

from relay.app import Relay
from relay.nostr.event import decode_event
from tests.client import ClosedError, RawClient
from tests.signer import Keys

Connect = Callable[[], Any]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


async def test_ok_true_means_committed(client: RawClient, db: asyncpg.Connection[Any]) -> None:
    event = Keys(1).sign(1, "durable")
    assert await client.publish(event) == ["OK", event["id"], True, ""]
    raw = await db.fetchval("SELECT raw FROM events WHERE id = $1", bytes.fromhex(event["id"]))
    assert msgspec.json.decode(raw) == event


async def test_duplicate(client: RawClient) -> None:
    event = Keys(1).sign(1, "twice")
    await client.publish(event)
    reply = await client.publish(event)
    assert reply[:3] == ["OK", event["id"], True]
    assert reply[3].startswith("duplicate: ")


async def test_served_json_is_byte_for_byte_what_was_sent(client: RawClient) -> None:
    event = Keys(1).sign(1, "odd spacing é \u2028 <&>")
    raw = msgspec.json.format(msgspec.json.encode(event), indent=1).decode()
    await client.send_text(f'["EVENT",{raw}]')
    assert (await client.expect("OK"))[2] is True
    await client.send(["REQ", "s", {"ids": [event["id"]]}])
    frame = await client.ws.recv()
    assert isinstance(frame, str)
    assert frame == f'["EVENT","s",{raw}]'


async def test_find_by_fields(client: RawClient) -> None:
    alice, bob = Keys(1), Keys(2)
    e1 = alice.sign(1, "a1", [["t", "run"], ["p", bob.pubkey]], created_at=1000)
    e2 = alice.sign(7, "+", [["e", e1["id"]], ["p", bob.pubkey]], created_at=1001)
    e3 = bob.sign(1, "b1", [["t", "swim"], ["t", "run"]], created_at=1002)
    for e in (e1, e2, e3):
        assert (await client.publish(e))[2] is True
    assert ids(await client.req("a", {"ids": [e1["id"], e3["id"]]})) == [e3["id"], e1["id"]]
    assert ids(await client.req("b", {"authors": [alice.pubkey], "kinds": [1]})) == [e1["id"]]
    assert ids(await client.req("c", {"#t": ["run"]})) == [e3["id"], e1["id"]]
    assert ids(await client.req("d", {"#e": [e1["id"]]})) == [e2["id"]]
    # Two tag letters in one filter are AND-ed.
    assert ids(await client.req("e", {"#t": ["run"], "#p": [bob.pubkey]})) == [e1["id"]]
    assert ids(await client.req("f", {"#t": ["swim"], "#p": [bob.pubkey]})) == []
    assert ids(await client.req("g", {"kinds": [7], "#p": [bob.pubkey]})) == [e2["id"]]


async def test_since_until_inclusive_and_limits(client: RawClient) -> None:
    keys = Keys(3)
    events = [keys.sign(1, f"n{i}", created_at=2000 + i // 2) for i in range(8)]
    for e in events:
        await client.publish(e)
    got = await client.req("s", {"authors": [keys.pubkey], "since": 2001, "until": 2002})
    assert sorted(ids(got)) == sorted(ids(events[2:6]))
    # Newest first, ties broken by the lowest id.
    expected = sorted(events, key=lambda e: (-e["created_at"], e["id"]))
    assert ids(await client.req("l", {"authors": [keys.pubkey], "limit": 3})) == ids(expected[:3])
    assert await client.req("z", {"authors": [keys.pubkey], "limit": 0}) == []
    everything = await client.req("all", {"authors": [keys.pubkey]})
    assert ids(everything) == ids(expected)


async def test_several_filters_are_ored_with_no_repeats(client: RawClient) -> None:
    keys = Keys(4)
    a = keys.sign(1, "a", [["t", "x"]], created_at=10)
    b = keys.sign(1, "b", [["t", "y"]], created_at=20)
    c = keys.sign(1, "c", [["t", "x"], ["t", "y"]], created_at=30)
    for e in (a, b, c):
        await client.publish(e)
    got = await client.req("s", {"#t": ["x"]}, {"#t": ["y"]}, {"ids": [c["id"]]})
    assert ids(got) == [c["id"], b["id"], a["id"]]
    # Each filter's limit applies to that filter alone.
    got = await client.req("l", {"#t": ["x"], "limit": 1}, {"#t": ["y"], "limit": 1})
    assert ids(got) == [c["id"]]
    got = await client.req("m", {"#t": ["x"], "limit": 1}, {"ids": [b["id"]]})
    assert ids(got) == [c["id"], b["id"]]


async def test_live_events_after_eose_and_close(connect: Connect) -> None:
    sub, pub = await connect(), await connect()
    keys = Keys(5)
    old = keys.sign(1, "old", [["t", "live"]])
    await pub.publish(old)
    assert ids(await sub.req("s", {"#t": ["live"]})) == [old["id"]]
    new = keys.sign(1, "new", [["t", "live"]])
    other = keys.sign(1, "other", [["t", "elsewhere"]])
    await pub.publish(other)
    await pub.publish(new)
    assert await sub.expect("EVENT") == ["EVENT", "s", new]
    await sub.send(["CLOSE", "s"])
    # After CLOSE nothing more arrives for "s"; a marker subscription proves ordering.
    await pub.publish(keys.sign(1, "after close", [["t", "live"]]))
    marker = keys.sign(1, "marker", [["t", "marker"]])
    await sub.send(["REQ", "m", {"#t": ["marker"]}])
    assert await sub.expect("EOSE") == ["EOSE", "m"]
    await pub.publish(marker)
    assert await sub.recv() == ["EVENT", "m", marker]


async def test_repeated_subscription_id_replaces(connect: Connect) -> None:
    sub, pub = await connect(), await connect()
    keys = Keys(6)
    await sub.req("s", {"kinds": [1]})
    assert await sub.req("s", {"kinds": [7]}) == []
    note = keys.sign(1, "not wanted any more")
    reaction = keys.sign(7, "+")
    await pub.publish(note)
    await pub.publish(reaction)
    assert await sub.expect("EVENT") == ["EVENT", "s", reaction]


async def test_live_event_during_query_is_sent_once(connect: Connect) -> None:
    sub, pub = await connect(), await connect()
    keys = Keys(7)
    events = [keys.sign(1, f"burst {i}", [["t", "burst"]]) for i in range(30)]
    await pub.send(["EVENT", events[0]])
    await sub.send(["REQ", "s", {"#t": ["burst"]}])
    for e in events[1:]:
        await pub.send(["EVENT", e])
    seen: list[str] = []
    while len(seen) < len(events):
        reply = await sub.recv()
        if reply[0] == "EVENT":
            seen.append(reply[2]["id"])
    assert sorted(seen) == sorted(ids(events))


async def test_replaceable(client: RawClient) -> None:
    keys = Keys(8)
    v1 = keys.sign(0, '{"name":"v1"}', created_at=100)
    v2 = keys.sign(0, '{"name":"v2"}', created_at=200)
    assert (await client.publish(v1))[2] is True
    assert (await client.publish(v2))[2] is True
    assert ids(await client.req("s", {"kinds": [0], "authors": [keys.pubkey]})) == [v2["id"]]
    late = await client.publish(v1)  # replaced, so not stored: a late older version
    assert late[2] is False and late[3].startswith("duplicate: a newer version")
    v0 = keys.sign(0, '{"name":"v0"}', created_at=50)
    reply = await client.publish(v0)
    assert reply[2] is False and reply[3].startswith("duplicate: a newer version")
    assert ids(await client.req("t", {"kinds": [0], "authors": [keys.pubkey]})) == [v2["id"]]


async def test_replaceable_tie_keeps_lowest_id(client: RawClient) -> None:
    keys = Keys(9)
    a = keys.sign(10002, "a", [["r", "wss://a"]], created_at=300)
    b = keys.sign(10002, "b", [["r", "wss://b"]], created_at=300)
    low, high = sorted([a, b], key=lambda e: e["id"])
    assert (await client.publish(high))[2] is True
    assert (await client.publish(low))[2] is True
    assert ids(await client.req("s", {"kinds": [10002], "authors": [keys.pubkey]})) == [low["id"]]
    assert (await client.publish(high))[2] is False
    assert ids(await client.req("t", {"kinds": [10002], "authors": [keys.pubkey]})) == [low["id"]]
    assert await client.req("u", {"#r": ["wss://" + high["content"]]}) == []


async def test_addressable(client: RawClient) -> None:
    keys = Keys(10)
    squat1 = keys.sign(33401, "v1", [["d", "squat"], ["title", "Squat"]], created_at=100)
    squat2 = keys.sign(33401, "v2", [["d", "squat"], ["title", "Back Squat"]], created_at=200)
    bench = keys.sign(33401, "", [["d", "bench"], ["title", "Bench"]], created_at=150)
    nod = keys.sign(30003, "", [], created_at=100)  # no d tag: the address uses ""
    nod2 = keys.sign(30003, "", [["d", ""]], created_at=101)
    for e in (squat1, squat2, bench, nod, nod2):
        assert (await client.publish(e))[2] is True
    lib = await client.req("lib", {"kinds": [33401], "authors": [keys.pubkey]})
    assert ids(lib) == [squat2["id"], bench["id"]]
    assert ids(await client.req("d", {"kinds": [33401], "#d": ["squat"]})) == [squat2["id"]]
    assert (await client.publish(squat1))[2] is False  # an older version arriving late
    assert ids(await client.req("n", {"kinds": [30003], "authors": [keys.pubkey]})) == [nod2["id"]]
    other = Keys(11).sign(33401, "", [["d", "squat"]], created_at=50)
    assert (await client.publish(other))[2] is True  # same d, other author: its own address


async def test_ephemeral_is_delivered_not_stored(connect: Connect) -> None:
    sub, pub = await connect(), await connect()
    keys = Keys(12)
    await sub.req("s", {"kinds": [20001]})
    event = keys.sign(20001, "typing")
    assert await pub.publish(event) == ["OK", event["id"], True, ""]
    assert await sub.expect("EVENT") == ["EVENT", "s", event]
    assert await pub.req("q", {"ids": [event["id"]]}) == []


async def test_deletion_by_id(client: RawClient) -> None:
    alice, mallory = Keys(13), Keys(14)
    note = alice.sign(1, "regret", created_at=100)
    keep = alice.sign(1, "keep", created_at=101)
    for e in (note, keep):
        await client.publish(e)
    forged = mallory.sign(5, "", [["e", note["id"]]])
    assert (await client.publish(forged))[2] is True
    assert ids(await client.req("a", {"ids": [note["id"]]})) == [note["id"]]
    deletion = alice.sign(5, "", [["e", note["id"]], ["k", "1"]])
    assert (await client.publish(deletion))[2] is True
    assert await client.req("b", {"ids": [note["id"]]}) == []
    assert ids(await client.req("c", {"kinds": [5], "authors": [alice.pubkey]})) == [deletion["id"]]
    again = await client.publish(note)
    assert again[2] is False and again[3].startswith("blocked: ")
    assert await client.req("d", {"ids": [note["id"]]}) == []
    assert ids(await client.req("e", {"ids": [keep["id"]]})) == [keep["id"]]


async def test_deletion_before_its_target(client: RawClient) -> None:
    alice = Keys(15)
    note = alice.sign(1, "will be deleted", created_at=100)
    assert (await client.publish(alice.sign(5, "", [["e", note["id"]]])))[2] is True
    reply = await client.publish(note)
    assert reply[2] is False and reply[3].startswith("blocked: ")
    other = Keys(16).sign(1, "x")
    stranger = alice.sign(5, "", [["e", other["id"]]])
    await client.publish(stranger)
    assert (await client.publish(other))[2] is True  # a deletion by someone else is no veto


async def test_deleting_a_deletion_has_no_effect(client: RawClient) -> None:
    alice = Keys(17)
    note = alice.sign(1, "x")
    await client.publish(note)
    deletion = alice.sign(5, "", [["e", note["id"]]])
    await client.publish(deletion)
    await client.publish(alice.sign(5, "", [["e", deletion["id"]]]))
    assert ids(await client.req("s", {"ids": [deletion["id"]]})) == [deletion["id"]]
    assert (await client.publish(note))[2] is False


async def test_deletion_by_address(client: RawClient) -> None:
    alice, bob = Keys(18), Keys(19)
    t1 = alice.sign(33402, "v1", [["d", "leg-day"]], created_at=100)
    t2 = alice.sign(33402, "v2", [["d", "leg-day"]], created_at=200)
    other = alice.sign(33402, "", [["d", "arm-day"]], created_at=100)
    for e in (t1, t2, other):
        await client.publish(e)
    address = f"33402:{alice.pubkey}:leg-day"
    assert (await client.publish(bob.sign(5, "", [["a", address]], created_at=300)))[2]
    assert ids(await client.req("a", {"#d": ["leg-day"]})) == [t2["id"]]  # not bob's to delete
    deletion = alice.sign(5, "", [["a", address]], created_at=250)
    assert (await client.publish(deletion))[2] is True
    assert await client.req("b", {"#d": ["leg-day"]}) == []
    assert ids(await client.req("c", {"#d": ["arm-day"]})) == [other["id"]]
    for old in (t1, t2, alice.sign(33402, "v3", [["d", "leg-day"]], created_at=250)):
        reply = await client.publish(old)
        assert reply[2] is False and reply[3].startswith("blocked: "), reply
    newer = alice.sign(33402, "v4", [["d", "leg-day"]], created_at=251)
    assert (await client.publish(newer))[2] is True
    assert ids(await client.req("d", {"#d": ["leg-day"]})) == [newer["id"]]


async def test_deleting_current_version_by_id_keeps_older_versions_out(
    client: RawClient,
) -> None:
    alice = Keys(20)
    v1 = alice.sign(33401, "v1", [["d", "plank"]], created_at=100)
    v2 = alice.sign(33401, "v2", [["d", "plank"]], created_at=200)
    await client.publish(v1)
    await client.publish(v2)
    await client.publish(alice.sign(5, "", [["e", v2["id"]]]))
    assert await client.req("s", {"#d": ["plank"]}) == []
    assert (await client.publish(v1))[2] is False
    v3 = alice.sign(33401, "v3", [["d", "plank"]], created_at=300)
    assert (await client.publish(v3))[2] is True


async def test_expired_events_are_never_served(relay: Relay, client: RawClient) -> None:
    keys = Keys(21)
    now = int(time.time())
    soon = keys.sign(1, "soon", [["expiration", str(now + 3600)]])
    assert (await client.publish(soon))[2] is True
    assert ids(await client.req("a", {"ids": [soon["id"]]})) == [soon["id"]]
    # An event accepted earlier whose time has since passed: stored directly, as it would be.
    gone = keys.sign(1, "gone", [["expiration", str(now - 1)]], created_at=now - 60)
    raw = msgspec.json.encode(gone)
    await relay.store.ingest([decode_event(raw)], [raw.decode()])
    assert await client.req("b", {"ids": [gone["id"]]}) == []
    assert await client.req("c", {"authors": [keys.pubkey]}) == [soon]
    await client.send(["COUNT", "n", {"authors": [keys.pubkey]}])
    assert await client.expect("COUNT") == ["COUNT", "n", {"count": 1}]
    assert await relay.store.purge_expired(now) == 1


async def test_count(client: RawClient) -> None:
    keys = Keys(22)
    for i in range(5):
        await client.publish(keys.sign(1, f"c{i}", [["t", "even" if i % 2 == 0 else "odd"]]))
    await client.send(["COUNT", "c", {"authors": [keys.pubkey]}])
    assert await client.recv() == ["COUNT", "c", {"count": 5}]
    await client.send(["COUNT", "u", {"#t": ["even"]}, {"#t": ["odd"]}, {"#t": ["even"]}])
    assert await client.recv() == ["COUNT", "u", {"count": 5}]
    await client.send(["COUNT", "l", {"#t": ["odd"], "limit": 1}])
    assert await client.recv() == ["COUNT", "l", {"count": 2}]


async def test_protected_event_is_restricted(client: RawClient) -> None:
    event = Keys(23).sign(1, "mine", [["-"]])
    reply = await client.publish(event)
    assert reply[2] is False and reply[3].startswith("restricted: ")


async def test_read_your_own_writes(client: RawClient) -> None:
    keys = Keys(24)
    events = [keys.sign(1, f"pipelined {i}") for i in range(20)]
    for e in events:
        await client.send(["EVENT", e])
    await client.send(["REQ", "s", {"authors": [keys.pubkey]}])
    got: list[str] = []
    while True:
        reply = await client.recv()
        if reply[0] == "EVENT":
            got.append(reply[2]["id"])
        elif reply[0] == "EOSE":
            break
    assert sorted(got) == sorted(ids(events))


async def test_many_in_flight_all_acknowledged(
    client: RawClient, db: asyncpg.Connection[Any]
) -> None:
    keys = Keys(25)
    events = [keys.sign(1, f"window {i}") for i in range(300)]
    await asyncio.gather(*(client.send(["EVENT", e]) for e in events))
    oks = {}
    while len(oks) < len(events):
        reply = await client.expect("OK")
        oks[reply[1]] = reply[2]
    assert all(oks.values())
    stored = await db.fetchval(
        "SELECT count(*) FROM events WHERE pubkey = $1", bytes.fromhex(keys.pubkey)
    )
    assert stored == len(events)


async def test_unknown_closed_subscription_and_limit(start_relay: Callable[..., Any]) -> None:
    from tests.conftest import relay_config, url_of

    relay = await start_relay(relay_config(limits={"max_subscriptions": 1}))
    client = await RawClient.open(url_of(relay))
    try:
        await client.req("a", {"kinds": [1]})
        with pytest.raises(ClosedError, match="rate-limited: too many open subscriptions"):
            await client.req("b", {"kinds": [1]})
        await client.send(["CLOSE", "a"])
        assert await client.req("b", {"kinds": [1]}) == []
    finally:
        await client.close()


async def test_events_stored_by_another_writer_reach_live_subscribers(
    client: RawClient, db_dsn: str
) -> None:
    """Another process (an import, a second relay) writes; NOTIFY wakes this relay's tail."""
    from relay.storage.postgres import Store, create_pool

    await client.req("s", {"kinds": [33401]})
    exercise = Keys(26).sign(33401, "", [["d", "deadlift"], ["title", "Deadlift"]])
    raw = msgspec.json.encode(exercise)
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        await Store(pool, default_limit=10).ingest([decode_event(raw)], [raw.decode()])
    finally:
        await pool.close()
    assert await client.expect("EVENT") == ["EVENT", "s", exercise]


async def test_nul_characters_in_tags_are_stored_and_found(client: RawClient) -> None:
    """PostgreSQL text cannot hold U+0000; such values are keyed, never a failed batch."""
    keys = Keys(27)
    note = keys.sign(1, "nul \u0000 in content", [["t", "a\u0000b"]])
    exercise = keys.sign(33401, "", [["d", "x\u0000y"], ["title", "odd"]])
    neighbours = [keys.sign(1, f"neighbour {i}") for i in range(5)]
    for e in (note, exercise, *neighbours):
        await client.send(["EVENT", e])
    oks = {}
    while len(oks) < 7:
        reply = await client.expect("OK")
        oks[reply[1]] = reply[2:]
    assert all(flag is True for flag, _ in oks.values()), oks
    assert await client.req("t", {"#t": ["a\u0000b"]}) == [note]
    assert await client.req("d", {"#d": ["x\u0000y"], "kinds": [33401]}) == [exercise]
    newer = keys.sign(33401, "v2", [["d", "x\u0000y"]], created_at=exercise["created_at"] + 1)
    assert (await client.publish(newer))[2] is True
    assert await client.req("e", {"authors": [keys.pubkey], "kinds": [33401]}) == [newer]


async def test_a_stored_answer_is_not_repeated_as_live(client: RawClient) -> None:
    """An event committed before the REQ is in its stored answer only: the log tail, which
    may dispatch it after EOSE, does not send it again as news."""
    keys = Keys(77)
    for round_ in range(20):
        base = int(time.time()) - 100 + 2 * round_
        old = keys.sign(1, f"old {round_}", created_at=base)
        assert (await client.publish(old))[2] is True
        sub = f"s{round_}"
        stored = await client.req(sub, {"authors": [keys.pubkey], "limit": 1})
        assert [e["id"] for e in stored] == [old["id"]]
        new = keys.sign(1, f"new {round_}", created_at=base + 1)
        await client.send(["EVENT", new])
        # Until both the OK and the live copy arrive (in either order), the only event for
        # this subscription is the new one, never the old one again.
        ok = live = False
        while not (ok and live):
            frame = await client.recv()
            if frame[0] == "OK":
                assert frame[1:3] == [new["id"], True]
                ok = True
            elif frame[0] == "EVENT" and frame[1] == sub:
                assert frame[2]["id"] == new["id"] and not live
                live = True
        await client.send(["CLOSE", sub])
