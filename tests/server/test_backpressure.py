"""Outbound flow control: a client that stops reading holds the relay's writes back without
losing, reordering or duplicating any frame, and gets everything once it reads again."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from relay.app import Relay
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
        sub = conn.subs["big"]
        assert sub.buffer is not None, "EOSE queued: the answer was too small to test this"
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
        # The 15 MB answer was queued a chunk at a time, never all of it at once.
        assert 0 < conn.peak_answer_unsent < 4 * 1024 * 1024
    finally:
        await reader.close()
        await publisher.close()


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
async def test_frames_of_every_length_arrive_intact(start_relay: Any, compression: bool) -> None:
    """Stored answers and live events whose frames take each header size (7-bit, 16-bit and
    64-bit lengths) arrive intact, framed by the relay or, with permessage-deflate
    negotiated, compressed by websockets."""
    relay: Relay = await start_relay(relay_config(compression=compression))
    options: dict[str, Any] = {"compression": "deflate" if compression else None}
    alice = Keys(32)
    publisher = await RawClient.open(url_of(relay), **options)
    reader = await RawClient.open(url_of(relay), **options)
    try:
        assert bool(reader.ws.protocol.extensions) is compression
        # Frames of about 300 bytes more than the content; the last two pass 65,535 by tags.
        sizes = [0, 1_000, 65_000, 65_000]
        tags = [[], [], [], [["t", "x" * 100]] * 10]

        def sign(letter: str, at: int) -> list[dict[str, Any]]:
            return [
                alice.sign(1, letter * n, t, created_at=at + i)
                for i, (n, t) in enumerate(zip(sizes, tags, strict=True))
            ]

        stored = sign("s", 1_000)
        for event in stored:
            reply = await publisher.publish(event)
            assert reply[2], reply
        got = await reader.req("all", {"authors": [alice.pubkey]})
        assert got == list(reversed(stored))
        # EOSE took a 7-bit length; the events 16-bit ones and, the last, a 64-bit one.
        frames = [len(msgspec.json.encode(["EVENT", "all", e])) for e in stored]
        assert 126 <= frames[0] < frames[2] < 65_536 < frames[3], frames

        live = sign("l", 3_000)
        for event in live:
            assert (await publisher.publish(event))[2]
            assert await reader.recv() == ["EVENT", "all", event]
    finally:
        await reader.close()
        await publisher.close()
