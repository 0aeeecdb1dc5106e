"""NIP-42 AUTH and the configured write and read rules over real sockets, and in NIP-11."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from relay.app import Relay
from relay.config import Config
from relay.nostr.rules import difficulty
from tests.client import ClosedError, RawClient
from tests.nostr.test_rules import mine
from tests.server.test_nip11 import http_get
from tests.signer import Keys

ALICE, BOB, MALLORY = Keys(51), Keys(52), Keys(53)


def free_port() -> int:
    """A port free now: the relay must know its public URL (with the port) before it binds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def policy_config(port: int, **sections: dict[str, Any]) -> Config:
    relay = {"port": port, "public_url": f"ws://127.0.0.1:{port}/", **sections.pop("relay", {})}
    tree: dict[str, Any] = {
        "relay": relay,
        "indexer": {"enabled": False},
        "metrics": {"listen": ""},
        **sections,
    }
    return msgspec.convert(tree, Config)


Start = Callable[..., Any]


@pytest.fixture
async def opened() -> AsyncIterator[list[RawClient]]:
    clients: list[RawClient] = []
    yield clients
    for c in clients:
        await c.close()


async def connect(relay: Relay, opened: list[RawClient]) -> tuple[RawClient, str]:
    """A client and the challenge the relay greeted it with."""
    c = await RawClient.open(f"ws://127.0.0.1:{relay.port}")
    opened.append(c)
    greeting = await c.recv()
    assert greeting[0] == "AUTH" and isinstance(greeting[1], str) and len(greeting[1]) >= 16
    return c, greeting[1]


def auth_event(
    keys: Keys,
    challenge: str,
    relay: Relay,
    relay_url: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    url = relay_url if relay_url is not None else f"ws://127.0.0.1:{relay.port}"
    return keys.sign(22242, "", [["relay", url], ["challenge", challenge]], created_at)


async def authenticate(c: RawClient, event: dict[str, Any]) -> list[Any]:
    await c.send(["AUTH", event])
    reply = await c.expect("OK")
    assert reply[1] == event["id"]
    return reply


async def test_auth_round_trip_and_refusals(start_relay: Start, opened: list[RawClient]) -> None:
    port = free_port()
    relay = await start_relay(policy_config(port, auth={"required": "writes"}))
    c, challenge = await connect(relay, opened)
    other, other_challenge = await connect(relay, opened)
    assert challenge != other_challenge
    note = ALICE.sign(1, "needs auth")
    assert (await c.publish(note))[2:] == [
        False,
        "auth-required: authenticate (NIP-42) to publish this event",
    ]
    refused = {
        "challenge": auth_event(ALICE, other_challenge, relay),
        "relay": auth_event(ALICE, challenge, relay, relay_url="ws://127.0.0.1:1"),
        "stale": auth_event(ALICE, challenge, relay, created_at=1_000_000),
        "sig": {
            **auth_event(ALICE, challenge, relay),
            "sig": auth_event(BOB, challenge, relay)["sig"],
        },
    }
    for what, event in refused.items():
        reply = await authenticate(c, event)
        assert reply[2] is False and reply[3].startswith("invalid: "), (what, reply)
    assert (await c.publish(note))[3].startswith("auth-required: ")
    # The relay URL as the client spelled it: the configured one has a trailing slash.
    assert (await authenticate(c, auth_event(ALICE, challenge, relay)))[2:] == [True, ""]
    assert (await c.publish(note))[2:] == [True, ""]
    bob_note = BOB.sign(1, "not alice")
    assert (await c.publish(bob_note))[3].startswith("restricted: ")
    assert (await authenticate(c, auth_event(BOB, challenge, relay)))[2] is True
    assert (await c.publish(bob_note))[2] is True
    # Reads are open; the other connection is not authenticated by this one's AUTH.
    stored = {e["id"] for e in await other.req("r", {"kinds": [1]})}
    assert stored == {bob_note["id"], note["id"]}
    assert (await other.publish(ALICE.sign(1, "other")))[3].startswith("auth-required: ")
    sample = relay.metrics.registry.get_sample_value
    assert sample("fitrelay_messages_sent_total", {"verb": "AUTH"}) == 2  # one per connection
    assert sample("fitrelay_messages_received_total", {"verb": "AUTH"}) == 6
    # The accepted AUTH answers are not counted as accepted events; the two notes are.
    assert sample("fitrelay_events_accepted_total", {"kind": "regular"}) == 2
    assert sample("fitrelay_events_accepted_total", {"kind": "ephemeral"}) == 0


async def test_protected_event_accepted_from_its_authed_author(
    start_relay: Start, opened: list[RawClient]
) -> None:
    relay = await start_relay(policy_config(free_port()))
    c, challenge = await connect(relay, opened)
    protected = ALICE.sign(1, "mine only", [["-"]])
    assert (await c.publish(protected))[3].startswith("auth-required: ")
    await authenticate(c, auth_event(BOB, challenge, relay))
    assert (await c.publish(protected))[3].startswith("restricted: ")
    await authenticate(c, auth_event(ALICE, challenge, relay))
    assert (await c.publish(protected))[2:] == [True, ""]
    assert [e["id"] for e in await c.req("p", {"ids": [protected["id"]]})] == [protected["id"]]
    # An AUTH event sent as EVENT is never stored nor broadcast.
    assert (await c.publish(auth_event(ALICE, challenge, relay)))[3].startswith("invalid: ")


async def test_reads_need_auth(start_relay: Start, opened: list[RawClient]) -> None:
    relay = await start_relay(policy_config(free_port(), auth={"required": "reads"}))
    c, challenge = await connect(relay, opened)
    with pytest.raises(ClosedError, match=r"^auth-required: "):
        await c.req("s", {"kinds": [1]})
    await c.send(["COUNT", "n", {"kinds": [1]}])
    closed = await c.expect("CLOSED")
    assert closed[1] == "n" and closed[2].startswith("auth-required: ")
    note = ALICE.sign(1, "writes stay open")
    assert (await c.publish(note))[2] is True
    await authenticate(c, auth_event(MALLORY, challenge, relay))
    assert [e["id"] for e in await c.req("s", {"kinds": [1]})] == [note["id"]]


async def test_listed_kinds_need_auth(start_relay: Start, opened: list[RawClient]) -> None:
    relay = await start_relay(policy_config(free_port(), auth={"kinds": [1301]}))
    c, challenge = await connect(relay, opened)
    record = ALICE.sign(1301, "5 km", [["d", "run"], ["exercise", "running"]])
    assert (await c.publish(record))[3].startswith("auth-required: ")
    assert (await c.publish(ALICE.sign(1, "open")))[2] is True
    assert len(await c.req("n", {"kinds": [1]})) == 1
    with pytest.raises(ClosedError, match=r"^auth-required: .*1301"):
        await c.req("w", {"kinds": [1301]})
    await authenticate(c, auth_event(ALICE, challenge, relay))
    assert (await c.publish(record))[2] is True
    assert [e["id"] for e in await c.req("w", {"kinds": [1301]})] == [record["id"]]


async def test_kinds_pubkeys_and_pow(start_relay: Start, opened: list[RawClient]) -> None:
    policy = {
        "preset": "fitness",
        "kinds_deny": [7],
        "pubkeys_deny": [MALLORY.pubkey],
        "min_pow_difficulty": 8,
    }
    relay = await start_relay(policy_config(free_port(), policy=policy))
    c, _challenge = await connect(relay, opened)
    worked = mine(ALICE, 8, target=8, kind=33401)
    assert (await c.publish(worked))[2:] == [True, ""]
    assert (await c.publish(mine(ALICE, 8, kind=7)))[3] == (
        "blocked: kind 7 is not accepted by this relay"
    )
    assert (await c.publish(mine(MALLORY, 8)))[3] == "blocked: this pubkey may not publish here"
    assert (await c.publish(mine(ALICE, 8, kind=30023)))[3] == (
        "restricted: kind 30023 is not accepted by this relay"
    )
    lazy = next(
        e for e in (ALICE.sign(1, f"lazy {i}") for i in range(64)) if difficulty(e["id"]) < 8
    )
    assert (await c.publish(lazy))[3].startswith("pow: difficulty ")
    cheat = mine(ALICE, 8, target=4)
    assert (await c.publish(cheat))[3] == (
        "pow: the nonce tag commits to difficulty 4; 8 is required"
    )
    assert [e["id"] for e in await c.req("q", {"kinds": [1, 7, 33401]})] == [worked["id"]]


async def test_pubkey_allow_list(start_relay: Start, opened: list[RawClient]) -> None:
    relay = await start_relay(policy_config(free_port(), policy={"pubkeys_allow": [ALICE.pubkey]}))
    c, _challenge = await connect(relay, opened)
    assert (await c.publish(ALICE.sign(1, "member")))[2] is True
    assert (await c.publish(BOB.sign(1, "stranger")))[3] == (
        "restricted: this relay accepts events only from its members"
    )


async def nip11(relay: Relay) -> dict[str, Any]:
    status, _headers, body = await http_get(relay.port, {"Accept": "application/nostr+json"})
    assert status == 200
    document: dict[str, Any] = json.loads(body)
    return document


async def test_nip11_reports_the_policy(start_relay: Start) -> None:
    config = policy_config(
        free_port(),
        policy={"preset": "fitness", "kinds_deny": [1], "min_pow_difficulty": 12},
        auth={"required": "all"},
    )
    relay = await start_relay(config)
    doc = await nip11(relay)
    limitation = doc["limitation"]
    assert limitation["auth_required"] is True
    assert limitation["restricted_writes"] is True
    assert limitation["min_pow_difficulty"] == 12
    assert 13 in doc["supported_nips"] and 42 in doc["supported_nips"]
    [retention] = doc["retention"]
    assert retention["time"] == 0
    assert [1, 2] in retention["kinds"] and [8, 1110] in retention["kinds"]
    assert 1301 not in retention["kinds"]


async def test_an_open_relay_offers_no_auth(relay: Relay, client: RawClient) -> None:
    doc = await nip11(relay)
    assert 42 not in doc["supported_nips"] and "retention" not in doc
    assert doc["limitation"]["auth_required"] is False
    assert doc["limitation"]["restricted_writes"] is False
    await client.send(["AUTH", ALICE.sign(22242, "", [["challenge", "x"]])])
    notice = await client.recv()
    assert notice[0] == "NOTICE" and notice[1].startswith("unsupported: ")


async def test_an_authed_pubkey_has_one_bucket_across_connections(
    start_relay: Start, opened: list[RawClient]
) -> None:
    rates = {"pubkey": {"event_per_second": 0.0001, "event_burst": 1}}
    relay = await start_relay(policy_config(free_port(), relay={"rate_limits": rates}))
    first, first_challenge = await connect(relay, opened)
    second, second_challenge = await connect(relay, opened)
    third, third_challenge = await connect(relay, opened)
    # Before AUTH no pubkey bucket applies (and the address has no limit here).
    assert (await first.publish(ALICE.sign(1, "anonymous 1")))[2] is True
    assert (await first.publish(ALICE.sign(1, "anonymous 2")))[2] is True
    await authenticate(first, auth_event(ALICE, first_challenge, relay))
    await authenticate(second, auth_event(ALICE, second_challenge, relay))
    await authenticate(third, auth_event(BOB, third_challenge, relay))
    assert (await first.publish(ALICE.sign(1, "authed 1")))[2] is True
    for c in (first, second):
        reply = await c.publish(ALICE.sign(1, "over the rate"))
        assert reply[2] is False and reply[3].startswith("rate-limited: "), reply
    assert (await third.publish(BOB.sign(1, "bob's own bucket")))[2] is True
    sample = relay.metrics.registry.get_sample_value
    assert sample("fitrelay_refusals_total", {"verb": "EVENT", "reason": "pubkey_rate"}) == 2
