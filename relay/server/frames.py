"""What a connection sends, as WebSocket frames: text frames are built here when no
extension is in use."""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection

__all__ = ["text_frame_header", "write_text_frames"]


def text_frame_header(size: int) -> bytes:
    """The header of a final, unmasked text frame of ``size`` bytes (RFC 6455 section 5.2),
    the frame a server sends when no extension is in use."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65_536:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


def write_text_frames(ws: ServerConnection, batch: list[bytes], *, plain: bool) -> None:
    """Frame ``batch`` as text messages and hand them to the socket in one call. ``plain``
    (no extension negotiated): a server's frame is a header and the payload as it is, so the
    header is built here (websockets' framing costs more than the write on a fan-out);
    otherwise, with permessage-deflate, websockets frames and compresses."""
    if plain:
        parts: list[bytes] = []
        for data in batch:
            parts.append(text_frame_header(len(data)))
            parts.append(data)
        ws.transport.writelines(parts)
    else:
        for data in batch:
            ws.protocol.send_text(data)
        ws.transport.writelines(ws.protocol.data_to_send())
