"""Client → relay messages decoded into typed values; relay → client messages encoded.

Relay messages are built as bytes: an event's stored JSON is spliced in unchanged, so it is
serialised once and re-verifies byte for byte on the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from relay.nostr.errors import NostrError

__all__ = [
    "ClientAuth",
    "ClientClose",
    "ClientCount",
    "ClientEvent",
    "ClientMessage",
    "ClientNegClose",
    "ClientNegMsg",
    "ClientNegOpen",
    "ClientReq",
    "decode_client_message",
    "encode_auth",
    "encode_closed",
    "encode_count",
    "encode_eose",
    "encode_event",
    "encode_events",
    "encode_neg_err",
    "encode_neg_msg",
    "encode_notice",
    "encode_ok",
]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    verb: ClassVar[str] = "EVENT"
    raw: bytes
    """The event object exactly as the client sent it."""


@dataclass(frozen=True, slots=True)
class ClientReq:
    verb: ClassVar[str] = "REQ"
    sub_id: str
    filters: list[object]


@dataclass(frozen=True, slots=True)
class ClientCount:
    verb: ClassVar[str] = "COUNT"
    sub_id: str
    filters: list[object]


@dataclass(frozen=True, slots=True)
class ClientClose:
    verb: ClassVar[str] = "CLOSE"
    sub_id: str


@dataclass(frozen=True, slots=True)
class ClientAuth:
    verb: ClassVar[str] = "AUTH"
    raw: bytes


@dataclass(frozen=True, slots=True)
class ClientNegOpen:
    """``["NEG-OPEN", sub_id, filter, message]`` (NIP-77), the message still hex."""

    verb: ClassVar[str] = "NEG-OPEN"
    sub_id: str
    filter: object
    message: str


@dataclass(frozen=True, slots=True)
class ClientNegMsg:
    verb: ClassVar[str] = "NEG-MSG"
    sub_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ClientNegClose:
    verb: ClassVar[str] = "NEG-CLOSE"
    sub_id: str


ClientMessage = (
    ClientEvent
    | ClientReq
    | ClientCount
    | ClientClose
    | ClientAuth
    | ClientNegOpen
    | ClientNegMsg
    | ClientNegClose
)

_frame = msgspec.json.Decoder(list[msgspec.Raw])
_str = msgspec.json.Decoder(str)
_any = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


def _decode_str(raw: msgspec.Raw, what: str) -> str:
    try:
        return _str.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise NostrError("invalid", f"{what} must be a string") from None


def _decode_filters(parts: list[msgspec.Raw], verb: str) -> list[object]:
    filters: list[object] = []
    for part in parts:
        try:
            filters.append(_any.decode(part))
        except (msgspec.DecodeError, RecursionError):
            raise NostrError("invalid", f"{verb}: a filter is not valid JSON") from None
    return filters


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Decode one text frame.

    Raises:
        NostrError: ``invalid:`` when the frame is not a NIP-01 client message.
    """
    try:
        parts = _frame.decode(data)
    except msgspec.ValidationError:
        raise NostrError("invalid", "a message must be a JSON array") from None
    except (msgspec.DecodeError, RecursionError):
        raise NostrError("invalid", "message is not valid JSON") from None
    if not parts:
        raise NostrError("invalid", "empty message")
    verb = _decode_str(parts[0], "the message type")
    if verb == "EVENT":
        if len(parts) != 2:
            raise NostrError("invalid", 'EVENT takes exactly one event: ["EVENT", <event>]')
        return ClientEvent(bytes(parts[1]))
    if verb in ("REQ", "COUNT"):
        if len(parts) < 2:
            raise NostrError("invalid", f'{verb} needs a subscription id: ["{verb}", <id>, ...]')
        sub_id = _decode_str(parts[1], "the subscription id")
        filters = _decode_filters(parts[2:], verb)
        if verb == "REQ":
            return ClientReq(sub_id, filters)
        return ClientCount(sub_id, filters)
    if verb == "CLOSE":
        if len(parts) != 2:
            raise NostrError("invalid", 'CLOSE takes exactly one subscription id: ["CLOSE", <id>]')
        return ClientClose(_decode_str(parts[1], "the subscription id"))
    if verb == "AUTH":
        return ClientAuth(bytes(parts[1]) if len(parts) > 1 else b"")
    if verb.startswith("NEG-"):
        return _decode_negentropy(verb, parts)
    raise NostrError("invalid", f"unknown message type {verb[:32]!r}")


def _decode_negentropy(verb: str, parts: list[msgspec.Raw]) -> ClientMessage:
    if verb == "NEG-OPEN":
        if len(parts) != 4:
            raise NostrError(
                "invalid", 'NEG-OPEN takes ["NEG-OPEN", <id>, <filter>, <message in hex>]'
            )
        sub_id = _decode_str(parts[1], "the subscription id")
        (flt,) = _decode_filters(parts[2:3], verb)
        return ClientNegOpen(sub_id, flt, _decode_str(parts[3], "the negentropy message"))
    if verb == "NEG-MSG":
        if len(parts) != 3:
            raise NostrError("invalid", 'NEG-MSG takes ["NEG-MSG", <id>, <message in hex>]')
        sub_id = _decode_str(parts[1], "the subscription id")
        return ClientNegMsg(sub_id, _decode_str(parts[2], "the negentropy message"))
    if verb == "NEG-CLOSE":
        if len(parts) != 2:
            raise NostrError("invalid", 'NEG-CLOSE takes ["NEG-CLOSE", <id>]')
        return ClientNegClose(_decode_str(parts[1], "the subscription id"))
    raise NostrError("invalid", f"unknown message type {verb[:32]!r}")


def encode_event(sub_id: str, raw_event: bytes) -> bytes:
    return b'["EVENT",' + _enc.encode(sub_id) + b"," + raw_event + b"]"


def encode_events(sub_id: str, raw_events: Iterable[str]) -> list[bytes]:
    """The EVENT messages of a stored answer, one per stored JSON text."""
    head = b'["EVENT",' + _enc.encode(sub_id) + b","
    return [head + raw.encode() + b"]" for raw in raw_events]


def encode_ok(event_id: str, accepted: bool, message: str) -> bytes:
    return _enc.encode(["OK", event_id, accepted, message])


def encode_eose(sub_id: str) -> bytes:
    return _enc.encode(["EOSE", sub_id])


def encode_closed(sub_id: str, message: str) -> bytes:
    return _enc.encode(["CLOSED", sub_id, message])


def encode_notice(message: str) -> bytes:
    return _enc.encode(["NOTICE", message])


def encode_count(sub_id: str, count: int) -> bytes:
    return _enc.encode(["COUNT", sub_id, {"count": count}])


def encode_auth(challenge: str) -> bytes:
    return _enc.encode(["AUTH", challenge])


def encode_neg_msg(sub_id: str, message: bytes) -> bytes:
    return _enc.encode(["NEG-MSG", sub_id, message.hex()])


def encode_neg_err(sub_id: str, message: str) -> bytes:
    return _enc.encode(["NEG-ERR", sub_id, message])
