"""The strfry-compatible write-policy plugin, a real subprocess, driven through a real relay
socket: accept, reject, shadowReject, a plugin that hangs (fail-closed and fail-open) and one
that exits (started again)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from relay.app import Relay
from relay.nostr.event import decode_event
from relay.nostr.policy import ConnInfo
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "policy.py"
COMMAND = f"{sys.executable} {PLUGIN}"


async def start(start_relay: Any, **write_policy: Any) -> tuple[Relay, RawClient]:
    relay: Relay = await start_relay(relay_config(write_policy={"plugin": COMMAND, **write_policy}))
    return relay, await RawClient.open(url_of(relay))


async def test_plugin_accepts_rejects_and_shadow_rejects(start_relay: Any) -> None:
    relay, client = await start(start_relay)
    keys = Keys()
    try:
        fine = keys.sign(content="hello")
        assert await client.publish(fine) == ["OK", fine["id"], True, ""]
        spam = keys.sign(content="spam")
        assert await client.publish(spam) == ["OK", spam["id"], False, "blocked: no spam here"]
        plain = keys.sign(content="noprefix")
        assert await client.publish(plain) == ["OK", plain["id"], False, "blocked: not today"]
        shadow = keys.sign(content="shadow")
        assert await client.publish(shadow) == ["OK", shadow["id"], True, ""]
        who = keys.sign(content="whoami")
        assert (await client.publish(who))[3] == "restricted: new IP4 127.0.0.1 - True"
        stored = await client.req("q", {"authors": [keys.pubkey]})
        assert [e["id"] for e in stored] == [fine["id"]]  # the shadow-rejected one is not
        assert relay.plugin is not None
        assert relay.plugin.refused == {
            ("EVENT", "plugin_reject"): 3,
            ("EVENT", "plugin_shadow_reject"): 1,
        }
    finally:
        await client.close()


async def test_the_plugin_vets_ephemeral_events_too(start_relay: Any) -> None:
    relay, publisher = await start(start_relay)
    listener = await RawClient.open(url_of(relay))
    keys = Keys()
    try:
        assert await listener.req("live", {"kinds": [20001]}) == []
        spam = keys.sign(kind=20001, content="spam")
        assert (await publisher.publish(spam))[2:] == [False, "blocked: no spam here"]
        fine = keys.sign(kind=20001, content="hi")
        assert (await publisher.publish(fine))[2] is True
        live = await listener.expect("EVENT")
        assert live[2]["id"] == fine["id"]  # the refused one was never relayed before it
    finally:
        await publisher.close()
        await listener.close()


async def test_the_plugin_is_told_the_address_family_and_the_authed_pubkey(
    start_relay: Any,
) -> None:
    relay, client = await start(start_relay)
    await client.close()
    keys = Keys()
    event = decode_event(msgspec.json.encode(keys.sign(content="whoami")))
    assert relay.plugin is not None
    refused = await relay.plugin.admit(ConnInfo(9, "2001:db8::1", frozenset({keys.pubkey})), event)
    assert refused is not None
    assert refused.message == f"restricted: new IP6 2001:db8::1 {keys.pubkey} True"


async def test_a_plugin_that_does_not_answer_fails_closed(start_relay: Any) -> None:
    relay, client = await start(start_relay, timeout_ms=200)
    keys = Keys()
    try:
        stuck = keys.sign(content="hang")
        ok = await client.publish(stuck)
        assert ok[:3] == ["OK", stuck["id"], False] and ok[3].startswith("error: ")
        after = keys.sign(content="after")  # the plugin still answers other events
        assert (await client.publish(after))[2] is True
        assert relay.plugin is not None and relay.plugin.failures == {"timeout": 1}
    finally:
        await client.close()


async def test_a_plugin_that_does_not_answer_fails_open(start_relay: Any) -> None:
    _relay, client = await start(start_relay, timeout_ms=200, on_failure="accept")
    keys = Keys()
    try:
        stuck = keys.sign(content="hang")
        assert await client.publish(stuck) == ["OK", stuck["id"], True, ""]
        assert [e["id"] for e in await client.req("q", {"ids": [stuck["id"]]})] == [stuck["id"]]
    finally:
        await client.close()


async def test_a_plugin_that_exits_is_started_again(start_relay: Any) -> None:
    relay, client = await start(start_relay)
    keys = Keys()
    try:
        assert relay.plugin is not None and relay.plugin.process is not None
        first = relay.plugin.process.pid
        fatal = keys.sign(content="exit")
        ok = await client.publish(fatal)
        assert ok[:3] == ["OK", fatal["id"], False] and ok[3].startswith("error: ")
        # The next event waits (within timeout_ms) for the new process, which accepts it.
        later = keys.sign(content="later")
        assert await client.publish(later) == ["OK", later["id"], True, ""]
        assert relay.plugin.process.pid != first
        assert relay.plugin.restarts == 1
        assert relay.plugin.failures == {"down": 1}
    finally:
        await client.close()


async def test_nip11_says_writes_are_restricted(start_relay: Any) -> None:
    relay, client = await start(start_relay)
    await client.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/nostr+json\r\n\r\n")
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    writer.close()
    assert b'"restricted_writes":true' in body
