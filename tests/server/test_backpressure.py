"""Outbound flow control: a client that stops reading holds the relay's writes back without
losing, reordering or duplicating any frame, and gets everything once it reads again."""

from __future__ import annotations

import asyncio
from typing import Any

from relay.server.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

BIG = 60_000  # characters of content per event
COUNT = 250  # an answer of ~15 MB, more than the kernel buffers between the two


async def _until(condition: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_paused_reader_gets_every_frame_in_order(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(max_pending_outbound_bytes=64 * 1024 * 1024))
    alice = Keys(31)
    publisher = await RawClient.open(url_of(relay))
    reader = await RawClient.open(url_of(relay))
    try:
        events = [
            alice.sign(1, f"{i:03d}" * (BIG // 3), created_at=10_000 + i) for i in range(COUNT)
        ]
        for event in events:
            reply = await publisher.publish(event)
            assert reply[2], reply[:2] + reply[3:]
        reader.ws.transport.pause_reading()
        await reader.send(["REQ", "big", {"authors": [alice.pubkey], "limit": COUNT}])
        await _until(lambda: any("big" in c.subs for c in relay.connections))
        (conn,) = [c for c in relay.connections if "big" in c.subs]
        # The kernel's buffers fill, the transport pauses the writes, the sender takes over.
        await _until(lambda: conn.sender_waiting)
        assert conn.outbound, "nothing left waiting: the answer was too small to test this"
        # Meanwhile the relay serves others.
        assert (await publisher.publish(alice.sign(1, "meanwhile", created_at=5)))[2]
        reader.ws.transport.resume_reading()
        got: list[dict[str, Any]] = []
        while (reply := await reader.recv())[0] == "EVENT":
            assert reply[1] == "big"
            got.append(reply[2])
        assert reply == ["EOSE", "big"]
        assert [e["id"] for e in got] == [e["id"] for e in reversed(events)]
        assert all(e == original for e, original in zip(got, reversed(events), strict=True))
        await _until(lambda: not conn.sender_waiting and not conn.outbound)
    finally:
        await reader.close()
        await publisher.close()
