"""Nostr events (NIP-01): the typed shape, canonical serialization, id and kind classes."""

from __future__ import annotations

import enum
import hashlib
import json
import re

import msgspec

from relay.nostr.errors import NostrError
from relay.nostr.limits import Limits

__all__ = [
    "Event",
    "KindClass",
    "canonical_bytes",
    "compute_id",
    "d_tag",
    "decode_event",
    "expiration",
    "is_hex64",
    "is_protected",
    "kind_class",
    "refuse_duplicate_keys",
    "validate_event",
]

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX128 = re.compile(r"[0-9a-f]{128}\Z")
MAX_KIND = 65_535
MAX_TIMESTAMP = 2**53 - 1  # the largest integer every JSON client parses exactly


def is_hex64(value: str) -> bool:
    """True for 64 lowercase hex digits: an event id or a public key as NIP-01 writes them."""
    return _HEX64.match(value) is not None


class Event(msgspec.Struct, frozen=True):
    """An event as NIP-01 defines it. Unknown keys in the JSON object are ignored."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]]
    content: str
    sig: str


class KindClass(enum.Enum):
    REGULAR = "regular"
    REPLACEABLE = "replaceable"
    EPHEMERAL = "ephemeral"
    ADDRESSABLE = "addressable"


def kind_class(kind: int) -> KindClass:
    """The NIP-01 storage class of a kind."""
    if kind in (0, 3) or 10_000 <= kind < 20_000:
        return KindClass.REPLACEABLE
    if 20_000 <= kind < 30_000:
        return KindClass.EPHEMERAL
    if 30_000 <= kind < 40_000:
        return KindClass.ADDRESSABLE
    return KindClass.REGULAR


_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def decode_event(raw: bytes) -> Event:
    """Decode one event JSON object; raise ``invalid:`` on any wrong shape."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise NostrError("invalid", f"malformed event: {exc}") from None
    except msgspec.DecodeError:
        raise NostrError("invalid", "malformed event: not a JSON object") from None


_members = msgspec.json.Decoder(dict[str, msgspec.Raw])
_KEY_LENGTHS = {name: len(name) + 2 for name in Event.__struct_fields__}
"""Each field's key as compact JSON writes it: the name in quotes."""


def _refuse_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise NostrError("invalid", "malformed event: a key appears twice in one object")
    return dict(pairs)


def refuse_duplicate_keys(raw: bytes) -> None:
    """Refuse an event whose JSON repeats a key in any object (``"content":"A",
    "content":"B"``): parsers disagree on which one counts, so a client could show text the
    signature does not cover.

    The common case costs one shallow decode: when the object holds only the event's own
    fields and its compact re-spelling is exactly as long as the text, no key can repeat.
    Anything else (whitespace, escapes, extra fields that may hold objects) is checked key
    by key.

    Raises:
        NostrError: ``invalid:`` for a repeated key or JSON that does not decode.
    """
    try:
        members = _members.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return  # not an object of members: decode_event says why
    if members.keys() <= _KEY_LENGTHS.keys():
        compact = 1 + sum(_KEY_LENGTHS[k] + 2 + len(v) for k, v in members.items())
        if compact == len(raw):
            return
    try:
        json.loads(raw, object_pairs_hook=_refuse_pairs)
    except (ValueError, RecursionError):
        return  # malformed in a way decode_event reports


def canonical_bytes(
    pubkey: object, created_at: object, kind: object, tags: object, content: object
) -> bytes:
    """The NIP-01 serialization ``[0,pubkey,created_at,kind,tags,content]`` as UTF-8.

    msgspec escapes exactly what NIP-01 asks (quote, backslash and U+0000-U+001F, using the
    short forms for \\b \\f \\n \\r \\t) and writes everything else as literal UTF-8. The
    arguments are plain JSON values, so ids of events the relay would refuse can be computed too.
    """
    return _encoder.encode([0, pubkey, created_at, kind, tags, content])


def compute_id(event: Event) -> str:
    """The event id: lowercase hex sha256 of the canonical serialization."""
    digest = hashlib.sha256(
        canonical_bytes(event.pubkey, event.created_at, event.kind, event.tags, event.content)
    )
    return digest.hexdigest()


def d_tag(event: Event) -> str:
    """The first ``d`` tag's value, or ``""`` when there is none (NIP-01)."""
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == "d":
            return tag[1]
    return ""


def expiration(event: Event) -> int | None:
    """The NIP-40 expiration timestamp, None when absent or not an integer."""
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == "expiration":
            value = tag[1]
            if value.isascii() and value.isdigit() and len(value) <= 16:
                return int(value)
            return None
    return None


def is_protected(event: Event) -> bool:
    """True for a NIP-70 protected event (a tag ``["-"]``)."""
    return any(len(tag) >= 1 and tag[0] == "-" for tag in event.tags)


def _check_text(value: str, what: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise NostrError("invalid", f"{what} is not valid Unicode") from None


def validate_event(event: Event, raw_size: int, limits: Limits, now: int) -> None:
    """Check shape, limits and time window, then the id. Signature is checked elsewhere.

    Raises:
        NostrError: with the NIP-01 prefix that tells the client why.
    """
    if not is_hex64(event.id):
        raise NostrError("invalid", "id must be 64 lowercase hex characters")
    if not is_hex64(event.pubkey):
        raise NostrError("invalid", "pubkey must be 64 lowercase hex characters")
    if not _HEX128.match(event.sig):
        raise NostrError("invalid", "sig must be 128 lowercase hex characters")
    if not 0 <= event.kind <= MAX_KIND:
        raise NostrError("invalid", f"kind must be between 0 and {MAX_KIND}")
    if not 0 <= event.created_at <= MAX_TIMESTAMP:
        raise NostrError("invalid", "created_at must be a non-negative unix timestamp")
    if raw_size > limits.max_event_bytes:
        raise NostrError("invalid", f"event is larger than {limits.max_event_bytes} bytes")
    if len(event.tags) > limits.max_event_tags:
        raise NostrError("invalid", f"event has more than {limits.max_event_tags} tags")
    _check_text(event.content, "content")
    if len(event.content) * 4 > limits.max_content_bytes and (
        len(event.content.encode()) > limits.max_content_bytes
    ):
        raise NostrError("invalid", f"content is longer than {limits.max_content_bytes} bytes")
    for tag in event.tags:
        for element in tag:
            _check_text(element, "a tag")
            if len(element) * 4 > limits.max_tag_value_bytes and (
                len(element.encode()) > limits.max_tag_value_bytes
            ):
                raise NostrError(
                    "invalid", f"a tag value is longer than {limits.max_tag_value_bytes} bytes"
                )
    future = limits.created_at_future_seconds
    if future and event.created_at > now + future:
        raise NostrError(
            "invalid",
            f"created_at is more than {limits.created_at_future_seconds} seconds in the future",
        )
    if limits.created_at_past_seconds and event.created_at < now - limits.created_at_past_seconds:
        raise NostrError(
            "invalid",
            f"created_at is more than {limits.created_at_past_seconds} seconds in the past",
        )
    if compute_id(event) != event.id:
        raise NostrError("invalid", "event id does not match the sha256 of its serialization")
