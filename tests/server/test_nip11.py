"""NIP-11 over HTTP on the relay's own port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from relay.app import Relay
from relay.nostr.limits import Limits
from tests.client import ClosedError, RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys


async def http_get(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET / HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


async def test_information_document(relay: Relay) -> None:
    status, headers, body = await http_get(relay.port, {"Accept": "application/nostr+json"})
    assert status == 200
    assert headers["content-type"] == "application/nostr+json"
    assert headers["access-control-allow-origin"] == "*"
    doc = msgspec.json.decode(body)
    assert doc["supported_nips"] == [1, 9, 11, 40, 45, 50, 70, 77]  # 50: pg_trgm is there
    assert doc["software"] == "fitrelay"
    limits = Limits()
    lim = doc["limitation"]
    assert lim["max_message_length"] == limits.max_message_bytes
    assert lim["max_subscriptions"] == limits.max_subscriptions
    assert lim["max_limit"] == limits.max_limit
    assert lim["default_limit"] == limits.default_limit
    assert lim["max_event_tags"] == limits.max_event_tags
    assert lim["max_content_length"] == limits.max_content_bytes
    assert lim["max_subid_length"] == 64
    assert lim["created_at_upper_limit"] == 900
    assert lim["max_queries_in_flight"] == limits.max_queries_in_flight
    assert "created_at_lower_limit" not in lim
    assert lim["max_negentropy_records"] == limits.max_negentropy_records
    assert lim["max_negentropy_sessions"] == limits.max_negentropy_sessions
    assert lim["negentropy_idle_seconds"] == limits.negentropy_idle_seconds
    assert lim["negentropy_frame_bytes"] == limits.negentropy_frame_bytes
    assert lim["auth_required"] is False


async def test_plain_get_is_not_an_error(relay: Relay) -> None:
    status, headers, body = await http_get(relay.port, {})
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b"Nostr relay" in body


async def test_reported_limits_are_the_enforced_ones(start_relay: Callable[..., Any]) -> None:
    config = relay_config(
        limits={
            "max_subscriptions": 2,
            "max_limit": 3,
            "default_limit": 2,
            "max_event_tags": 1,
            "max_content_bytes": 5,
            "max_filters": 1,
            "created_at_past_seconds": 60,
        },
        info={"name": "gym relay", "contact": "ops@example.org"},
    )
    relay: Relay = await start_relay(config)
    _, _, body = await http_get(relay.port, {"Accept": "application/nostr+json"})
    doc = msgspec.json.decode(body)
    lim = doc["limitation"]
    assert doc["name"] == "gym relay" and doc["contact"] == "ops@example.org"
    assert (lim["max_subscriptions"], lim["max_limit"], lim["default_limit"]) == (2, 3, 2)
    assert lim["created_at_lower_limit"] == 60
    client = await RawClient.open(url_of(relay))
    try:
        keys = Keys(1)
        for i in range(4):
            assert (await client.publish(keys.sign(1, f"n{i}")))[2] is True
        assert len(await client.req("a", {"limit": 100})) == lim["max_limit"]
        assert len(await client.req("b", {})) == lim["default_limit"]
        assert (await client.publish(keys.sign(1, "x" * 6)))[3].startswith("invalid: content")
        reply = await client.publish(keys.sign(1, "", [["t", "a"], ["t", "b"]]))
        assert reply[3] == "invalid: event has more than 1 tags"
        with pytest.raises(ClosedError, match="more than 1 filters"):
            await client.req("c", {}, {})
        with pytest.raises(ClosedError, match="too many open subscriptions"):
            await client.req("d", {})
    finally:
        await client.close()


async def test_policies_reach_the_writer_front_and_nip11(db_dsn: str) -> None:
    """A rule that waits (run in front of the writer) refuses with its prefix over a real
    socket, the refusal is counted, and NIP-11 reports what the policies imply."""
    from relay.nostr.errors import NostrError
    from relay.nostr.event import Event
    from relay.nostr.policy import DEFAULT_POLICIES, ConnInfo, Policies

    async def no_reactions(conn: ConnInfo, event: Event) -> NostrError | None:
        await asyncio.sleep(0)
        return NostrError("blocked", "no reactions here") if event.kind == 7 else None

    policies = DEFAULT_POLICIES + Policies(
        admit_event=(no_reactions,), limitation={"restricted_writes": True}
    )
    relay = Relay(relay_config(), db_dsn, policies)
    await relay.start()
    try:
        _, _, body = await http_get(relay.port, {"Accept": "application/nostr+json"})
        assert msgspec.json.decode(body)["limitation"]["restricted_writes"] is True
        client = await RawClient.open(url_of(relay))
        try:
            keys = Keys(5)
            ok = await client.publish(keys.sign(7, "+"))
            assert ok[2:] == [False, "blocked: no reactions here"]
            assert (await client.publish(keys.sign(1, "fine")))[2] is True
            assert len(await client.req("r", {"kinds": [7, 1]})) == 1
        finally:
            await client.close()
        rejected = relay.metrics.events_rejected.labels("blocked", "regular")._value.get()
        assert rejected == 1
    finally:
        await relay.stop()
