"""The harness's own frame reader against a real websockets server: sizes around each length
boundary, messages split across reads and fragmented, compressed ones, pings answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench.common import open_ws
from bench.frames import FrameSocket

SIZES = [0, 1, 125, 126, 65_535, 65_536, 300_000]
"""Message lengths around each frame-length boundary (what the frame carries is shorter when
compressed; the server's repeated text makes later messages refer back to earlier ones)."""


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_every_message_arrives_whole_and_in_order(compression: str | None) -> None:
    pongs: list[bytes] = []
    go = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("read by websockets " * 20)  # a compressor's context now holds this
        await go.wait()
        for n in SIZES:
            await ws.send("x" * n)
        await ws.send(["frag", "mented ", "message"])  # three frames, one message
        pong = await ws.ping(b"are you there")
        await pong
        pongs.append(b"pong")
        await ws.send("last")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=compression, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await open_ws(f"ws://127.0.0.1:{port}", compression=compression)
        assert await ws.recv() == "read by websockets " * 20
        got: list[bytes] = []
        done = asyncio.Event()

        def received(message: bytes, _at: float) -> None:
            got.append(message)
            if message == b"last":
                done.set()

        lost: list[Any] = []
        socket = FrameSocket.take_over(ws, received, lost.append)
        assert (socket.deflate is not None) is (compression is not None)
        go.set()
        async with asyncio.timeout(10):
            await done.wait()
        assert got == [b"x" * n for n in SIZES] + [b"fragmented message", b"last"]
        assert pongs == [b"pong"]
        socket.close()
        async with asyncio.timeout(10):
            while not lost:
                await asyncio.sleep(0.01)
        assert socket.lost
        with pytest.raises(ConnectionError):
            socket.send_text(b"after the end")
