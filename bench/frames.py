"""WebSocket frames read and written by the harness itself once a connection is open.

websockets opens each connection (the HTTP upgrade, extension negotiation); then the
connection's transport is handed to :class:`FrameSocket`, which splits incoming bytes into
messages as they arrive and writes outgoing text frames directly. websockets' receive path
(a parser generator, message assembly, a future per message) costs a client tens of
microseconds per message; on a 2-core machine that CPU is taken from the relay under test
and shows up as latency that is not the relay's. Messages compressed with permessage-deflate
are inflated here; outgoing frames are never compressed (RFC 7692 lets a client choose per
message).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any

__all__ = ["FrameSocket", "masked_text_frame"]

_TEXT, _BINARY, _CONTINUATION, _CLOSE, _PING = 0x1, 0x2, 0x0, 0x8, 0x9
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


def masked_text_frame(payload: bytes) -> bytes:
    """A final text frame as a client must send it: masked, here with an all-zero key (which
    leaves the payload as it is; servers do not judge keys)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 65_536:
        header = b"\x81\xfe" + size.to_bytes(2, "big")
    else:
        header = b"\x81\xff" + size.to_bytes(8, "big")
    return header + bytes(4) + payload


class FrameSocket(asyncio.Protocol):
    """Takes over an open client connection: each text message goes to ``on_message`` with
    the ``time.monotonic()`` at which its last bytes were read."""

    def __init__(
        self,
        transport: asyncio.Transport,
        on_message: Callable[[bytes, float], None],
        *,
        on_lost: Callable[[Exception | None], None] | None = None,
        deflate: Any = None,
    ) -> None:
        self.transport = transport
        self.on_message = on_message
        self.on_lost = on_lost
        self.lost = False
        self.deflate = deflate
        """websockets' permessage-deflate state, when negotiated: messages compressed with
        context takeover are inflated with the decompressor that read the earlier ones."""
        self.buffer = b""
        self.fragments: list[bytes] = []
        self.fragmented_opcode = 0
        self.fragmented_compressed = False

    @classmethod
    def take_over(
        cls,
        ws: Any,
        on_message: Callable[[bytes, float], None],
        on_lost: Callable[[Exception | None], None] | None = None,
    ) -> FrameSocket:
        """Read ``ws`` (a websockets client connection, idle: nothing half received) from now
        on; websockets no longer sees its bytes. ``on_lost`` is called when it closes."""
        extensions = ws.protocol.extensions
        deflate = extensions[0] if extensions else None
        socket = cls(ws.transport, on_message, on_lost=on_lost, deflate=deflate)
        ws.transport.set_protocol(socket)
        return socket

    def send_text(self, payload: bytes) -> None:
        if self.lost:
            raise ConnectionError("the connection is closed")
        self.transport.write(masked_text_frame(payload))

    def close(self) -> None:
        """A close frame (1000), then the socket closes."""
        if not self.transport.is_closing():
            self.transport.write(b"\x88\x82\x00\x00\x00\x00\x03\xe8")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buffer + data if self.buffer else data
        at, end = 0, len(buf)
        while end - at >= 2:
            first, size = buf[at], buf[at + 1] & 0x7F
            start = at + 2
            if size == 126:
                start, size = at + 4, int.from_bytes(buf[at + 2 : at + 4], "big")
            elif size == 127:
                start, size = at + 10, int.from_bytes(buf[at + 2 : at + 10], "big")
            if end < start + size:
                break
            self._frame(first, buf[start : start + size], now)
            at = start + size
        self.buffer = buf[at:]

    def _frame(self, first: int, payload: bytes, now: float) -> None:
        fin, compressed, opcode = first & 0x80, bool(first & 0x40), first & 0x0F
        if opcode == _PING:  # answered with a masked pong carrying the same payload
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + bytes(4) + payload)
            return
        if opcode == _CLOSE:
            self.close()
            return
        if opcode in (_TEXT, _BINARY) and not fin:
            self.fragments = [payload]
            self.fragmented_opcode, self.fragmented_compressed = opcode, compressed
            return
        if opcode == _CONTINUATION:
            self.fragments.append(payload)
            if not fin:
                return
            payload, self.fragments = b"".join(self.fragments), []
            opcode, compressed = self.fragmented_opcode, self.fragmented_compressed
        if opcode != _TEXT:
            return  # pongs; binary messages are not part of NIP-01
        if compressed and self.deflate is not None:
            payload = self._inflate(payload)
        self.on_message(payload, now)

    def _inflate(self, payload: bytes) -> bytes:
        deflate = self.deflate
        if deflate.remote_no_context_takeover:  # each message on its own
            decoder = zlib.decompressobj(wbits=-deflate.remote_max_window_bits)
        else:
            decoder = deflate.decoder
        return decoder.decompress(payload + _DEFLATE_TAIL)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.on_lost is not None:
            self.on_lost(exc)
