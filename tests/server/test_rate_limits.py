"""Rate limits, the connection cap and trusted proxies over real sockets. The rates are so
low that no token refills during a test: every refusal below is certain without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from websockets.exceptions import InvalidStatus

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.server.test_metrics import http_get, scrape, value
from tests.signer import Keys

SLOW = 0.0001
"""Tokens per second: one every few hours."""


def limited(**ip: Any) -> dict[str, Any]:
    return {"ip": ip}


async def test_events_over_the_rate_get_ok_false_rate_limited(start_relay: Any) -> None:
    relay: Relay = await start_relay(
        relay_config(metrics=True, rate_limits=limited(event_per_second=SLOW, event_burst=2))
    )
    first, second = await RawClient.open(url_of(relay)), await RawClient.open(url_of(relay))
    keys = Keys()
    try:
        events = [keys.sign(content=str(n)) for n in range(3)]
        assert (await first.publish(events[0]))[2] is True
        assert (await second.publish(events[1]))[2] is True  # one bucket for the address
        ok = await first.publish(events[2])
        assert ok[:3] == ["OK", events[2]["id"], False]
        assert ok[3].startswith("rate-limited: ")
        # A refused EVENT is refused before anything else, so it was not stored.
        stored = await first.req("q", {"authors": [keys.pubkey]})
        assert {e["id"] for e in stored} == {e["id"] for e in events[:2]}
        samples = await scrape(relay)
        assert value(samples, "fitrelay_refusals_total", verb="EVENT", reason="ip_rate") == 1
        assert value(samples, "fitrelay_refusals_total", verb="REQ", reason="ip_rate") == 0
        assert (
            value(samples, "fitrelay_events_rejected_total", reason="rate-limited", kind="regular")
            == 1
        )
    finally:
        await first.close()
        await second.close()


async def test_req_and_count_have_their_own_rates(start_relay: Any) -> None:
    config = relay_config(
        metrics=True,
        rate_limits=limited(req_per_second=SLOW, req_burst=1, count_per_second=SLOW, count_burst=2),
    )
    relay: Relay = await start_relay(config)
    client = await RawClient.open(url_of(relay))
    try:
        assert await client.req("a", {"kinds": [1]}) == []
        await client.send(["REQ", "b", {"kinds": [1]}])
        closed = await client.expect("CLOSED")
        assert closed[1] == "b" and closed[2].startswith("rate-limited: ")
        for n in range(2):
            await client.send(["COUNT", f"c{n}", {"kinds": [1]}])
            assert (await client.expect("COUNT"))[2] == {"count": 0}
        await client.send(["COUNT", "c2", {"kinds": [1]}])
        closed = await client.expect("CLOSED")
        assert closed[1] == "c2" and closed[2].startswith("rate-limited: ")
        ok = await client.publish(Keys().sign())  # EVENT is not limited here
        assert ok[2] is True
        samples = await scrape(relay)
        assert value(samples, "fitrelay_refusals_total", verb="REQ", reason="ip_rate") == 1
        assert value(samples, "fitrelay_refusals_total", verb="COUNT", reason="ip_rate") == 1
        assert value(samples, "fitrelay_subscriptions_closed_total", reason="rate-limited") == 2
    finally:
        await client.close()


async def test_nip11_reports_the_rates(start_relay: Any) -> None:
    config = relay_config(
        rate_limits={"ip": {"event_per_second": 2.5}, "max_connections_per_ip": 8}
    )
    relay: Relay = await start_relay(config)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/nostr+json\r\n\r\n")
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        document = msgspec.json.decode(await reader.readexactly(length))
    writer.close()
    limitation = document["limitation"]
    assert limitation["rate_limits"] == {"ip": {"EVENT": {"per_second": 2.5, "burst": 3.0}}}
    assert limitation["max_connections_per_ip"] == 8


async def wait_for_count(relay: Relay, ip: str, n: int) -> None:
    """The server counts a connection until its TCP connection is gone."""
    async with asyncio.timeout(10):
        while relay.server.per_ip.get(ip, 0) != n:
            await asyncio.sleep(0.01)


async def test_connections_per_address_are_capped_with_http_429(start_relay: Any) -> None:
    relay: Relay = await start_relay(
        relay_config(metrics=True, rate_limits={"max_connections_per_ip": 2})
    )
    url = url_of(relay)
    clients = [await RawClient.open(url), await RawClient.open(url)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.open(url)
        assert refused.value.response.status_code == 429
        assert refused.value.response.body.startswith(b"rate-limited: ")
        # NIP-11 over plain HTTP is not a WebSocket connection: never capped.
        assert (await http_get(relay.port, "/"))[0] == 200
        await clients.pop().close()
        await wait_for_count(relay, "127.0.0.1", 1)
        clients.append(await RawClient.open(url))
        samples = await scrape(relay)
        assert (
            value(samples, "fitrelay_refusals_total", verb="connect", reason="ip_connections") == 1
        )
    finally:
        for client in clients:
            await client.close()


def forwarded(ip: str) -> dict[str, Any]:
    return {"additional_headers": {"X-Forwarded-For": f"{ip}, 127.0.0.1"}}


async def test_a_trusted_proxy_names_the_client(start_relay: Any) -> None:
    relay: Relay = await start_relay(
        relay_config(
            trusted_proxies=["127.0.0.0/8"],
            rate_limits={"max_connections_per_ip": 1, **limited(event_per_second=SLOW)},
        )
    )
    url = url_of(relay)
    alice = await RawClient.open(url, **forwarded("198.51.100.7"))
    bob = await RawClient.open(url, **forwarded("198.51.100.8"))
    try:
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.open(url, **forwarded("198.51.100.7"))
        assert refused.value.response.status_code == 429
        keys = Keys()
        assert (await alice.publish(keys.sign(content="a")))[2] is True
        assert (await bob.publish(keys.sign(content="b")))[2] is True  # its own bucket
        assert (await alice.publish(keys.sign(content="c")))[2] is False
        assert {conn.session.conn.ip for conn in relay.connections} == {
            "198.51.100.7",
            "198.51.100.8",
        }
    finally:
        await alice.close()
        await bob.close()


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(start_relay: Any) -> None:
    relay: Relay = await start_relay(
        relay_config(trusted_proxies=["10.0.0.0/8"], rate_limits=limited(event_per_second=SLOW))
    )
    url = url_of(relay)
    alice = await RawClient.open(url, **forwarded("198.51.100.7"))
    bob = await RawClient.open(url, additional_headers={"X-Real-IP": "198.51.100.8"})
    try:
        keys = Keys()
        assert (await alice.publish(keys.sign(content="a")))[2] is True
        ok = await bob.publish(keys.sign(content="b"))  # the same address: the same bucket
        assert ok[2] is False and ok[3].startswith("rate-limited: ")
        assert {conn.session.conn.ip for conn in relay.connections} == {"127.0.0.1"}
    finally:
        await alice.close()
        await bob.close()
