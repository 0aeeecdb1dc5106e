"""NIP-77 over a real socket: the relay's answers, its errors and limits, and the set it
reconciles over (the REQ set: deletions and expiration applied)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relay.app import Relay
from relay.nostr.negentropy import Items, initiate, reconcile
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys, unique_content

KIND = 1301


async def negentropy(
    client: RawClient, sub_id: str, flt: dict[str, Any], mine: Items
) -> tuple[set[str], set[str]]:
    """Run a whole sync as the initiator: the ids only the client has, only the relay has."""
    have: set[str] = set()
    need: set[str] = set()
    await client.send(["NEG-OPEN", sub_id, flt, initiate(mine).hex()])
    while True:
        reply = await client.recv()
        assert reply[:2] == ["NEG-MSG", sub_id], reply
        message, found_have, found_need = reconcile(mine, bytes.fromhex(reply[2]))
        have.update(i.hex() for i in found_have)
        need.update(i.hex() for i in found_need)
        if message is None:
            await client.send(["NEG-CLOSE", sub_id])
            return have, need
        await client.send(["NEG-MSG", sub_id, message.hex()])


def items_of(events: list[dict[str, Any]]) -> Items:
    return Items((e["created_at"], bytes.fromhex(e["id"])) for e in events)


async def test_reconciles_against_what_req_returns(client: RawClient) -> None:
    keys = Keys()
    now = int(time.time())
    kept = [keys.sign(KIND, unique_content(), created_at=now - i) for i in range(40)]
    deleted = keys.sign(KIND, unique_content(), created_at=now - 100)
    soon = keys.sign(KIND, unique_content(), tags=[["expiration", str(now + 2)]])
    for event in [*kept, deleted, soon]:
        assert (await client.publish(event))[2] is True
    deletion = keys.sign(5, "", tags=[["e", deleted["id"]]])
    assert (await client.publish(deletion))[2] is True
    flt = {"kinds": [KIND], "authors": [keys.pubkey]}
    mine = items_of([*kept[:30], deleted])
    have, need = await negentropy(client, "n1", flt, mine)
    assert have == {deleted["id"]}
    assert need == {e["id"] for e in kept[30:]} | {soon["id"]}
    # Past its expiration the event leaves the set, as it leaves REQ's answers.
    deadline = time.monotonic() + 10
    while soon["id"] in need:
        assert time.monotonic() < deadline
        have, need = await negentropy(client, "n1", flt, mine)
    assert need == {e["id"] for e in kept[30:]}


async def test_the_filter_limit_takes_the_newest(client: RawClient) -> None:
    keys = Keys()
    now = int(time.time())
    events = [keys.sign(KIND, unique_content(), created_at=now - i) for i in range(10)]
    for event in events:
        await client.publish(event)
    flt = {"authors": [keys.pubkey], "limit": 4}
    assert await negentropy(client, "lim", flt, Items([])) == (
        set(),
        {e["id"] for e in events[:4]},
    )


async def test_errors(start_relay: Callable[..., Any]) -> None:
    config = relay_config(limits={"max_negentropy_records": 3, "max_negentropy_sessions": 1})
    relay: Relay = await start_relay(config)
    client = await RawClient.open(url_of(relay))
    try:
        keys = Keys()
        empty = initiate(Items([])).hex()
        await client.send(["NEG-OPEN", "x", {"authors": [keys.pubkey]}, "zz"])
        assert await client.recv() == ["NEG-ERR", "x", "invalid: the negentropy message is not hex"]
        await client.send(["NEG-MSG", "nope", empty])
        reply = await client.recv()
        assert reply[:2] == ["NEG-ERR", "nope"] and reply[2].startswith("closed:")
        await client.send(["NEG-OPEN", "bad", {"authors": [keys.pubkey]}, "6100000207"])
        reply = await client.recv()
        assert reply[:2] == ["NEG-ERR", "bad"] and reply[2].startswith("invalid:")
        # Another protocol version: the relay answers with the one it speaks.
        await client.send(["NEG-OPEN", "v2", {"authors": [keys.pubkey]}, "62"])
        assert await client.recv() == ["NEG-MSG", "v2", "61"]
        # One session at most: a second id is refused, the same id replaces the first.
        await client.send(["NEG-OPEN", "other", {"authors": [keys.pubkey]}, empty])
        reply = await client.recv()
        assert reply[:2] == ["NEG-ERR", "other"] and reply[2].startswith("rate-limited:")
        await client.send(["NEG-CLOSE", "v2"])
        for i in range(4):
            await client.publish(keys.sign(KIND, unique_content(), created_at=1_700_000_000 + i))
        await client.send(["NEG-OPEN", "big", {"authors": [keys.pubkey]}, empty])
        reply = await client.recv()
        assert reply[:2] == ["NEG-ERR", "big"] and reply[2].startswith("blocked: too many records")
        await client.send(["NEG-OPEN", "few", {"authors": [keys.pubkey], "limit": 3}, empty])
        reply = await client.recv()
        assert reply[:2] == ["NEG-MSG", "few"]
    finally:
        await client.close()


async def test_idle_sessions_are_closed(start_relay: Callable[..., Any]) -> None:
    relay: Relay = await start_relay(relay_config(limits={"negentropy_idle_seconds": 1}))
    client = await RawClient.open(url_of(relay))
    try:
        await client.send(["NEG-OPEN", "idle", {"kinds": [KIND]}, initiate(Items([])).hex()])
        assert (await client.recv())[:2] == ["NEG-MSG", "idle"]
        reply = await client.recv(timeout=10)
        assert reply == ["NEG-ERR", "idle", "closed: the negentropy session was idle too long"]
        await client.send(["NEG-MSG", "idle", "6100000200"])
        assert (await client.recv())[:3] == [
            "NEG-ERR",
            "idle",
            "closed: no negentropy session with this id",
        ]
    finally:
        await client.close()


async def test_a_message_over_the_size_limit_ends_the_session(
    start_relay: Callable[..., Any],
) -> None:
    relay: Relay = await start_relay(relay_config(limits={"max_message_bytes": 4_096}))
    client = await RawClient.open(url_of(relay))
    try:
        await client.send(["NEG-OPEN", "s", {"kinds": [KIND]}, initiate(Items([])).hex()])
        assert (await client.recv())[:2] == ["NEG-MSG", "s"]
        await client.send(["NEG-MSG", "s", "61" + "00" * 3_000])
        reply = await client.recv()
        assert reply[:2] == ["NEG-ERR", "s"] and reply[2].startswith("invalid: message is larger")
        await client.send(["NEG-MSG", "s", "6100000200"])
        assert (await client.recv())[2] == "closed: no negentropy session with this id"
    finally:
        await client.close()
