"""A minimal raw WebSocket client for protocol tests: send frames, await typed replies."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT = 10.0


class RawClient:
    """Speaks NIP-01 frame by frame; every wait has a timeout."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        return cls(await connect(url, max_size=None, max_queue=None, **kwargs))

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, message: object) -> None:
        await self.ws.send(msgspec.json.encode(message).decode())

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout: float = TIMEOUT) -> list[Any]:
        async with asyncio.timeout(timeout):
            data = await self.ws.recv()
        decoded = msgspec.json.decode(data)
        assert isinstance(decoded, list), decoded
        return decoded

    async def publish(self, event: dict[str, Any]) -> list[Any]:
        """Send an EVENT and return its OK message."""
        await self.send(["EVENT", event])
        while True:
            reply = await self.recv()
            if reply[0] == "OK" and reply[1] == event["id"]:
                return reply
            if reply[0] == "NOTICE":
                return reply

    async def req(self, sub_id: str, *filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Send a REQ and return the stored events up to EOSE (or raise on CLOSED)."""
        await self.send(["REQ", sub_id, *filters])
        events: list[dict[str, Any]] = []
        while True:
            reply = await self.recv()
            if reply[0] == "EVENT" and reply[1] == sub_id:
                events.append(reply[2])
            elif reply[0] == "EOSE" and reply[1] == sub_id:
                return events
            elif reply[0] == "CLOSED" and reply[1] == sub_id:
                raise ClosedError(reply[2])

    async def expect(self, verb: str, timeout: float = TIMEOUT) -> list[Any]:
        """Skip frames until one with ``verb`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                reply = await self.recv(timeout)
                if reply[0] == verb:
                    return reply


class ClosedError(Exception):
    """The relay answered a REQ with CLOSED."""
