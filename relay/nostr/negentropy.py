"""Negentropy protocol version 1 (NIP-77): range-based set reconciliation, sans I/O.

Both sides hold a set of items, ``(created_at, id)`` of the events a filter matches, sorted
by timestamp then id. A message is the version byte ``0x61`` followed by ranges; each range
is an upper bound (its lower bound is the previous range's upper bound, zero at first), a
mode and a payload:

- ``Skip`` (0): nothing to say about this range;
- ``Fingerprint`` (1): 16 bytes, the first half of SHA-256 over the 32-byte little-endian
  sum (mod 2**256) of the range's ids followed by the varint count of them;
- ``IdList`` (2): a varint count, then that many 32-byte ids.

Varints are base 128, most significant group first, the high bit set on every byte but the
last. A bound is a timestamp, encoded as 1 + its difference from the previous bound's in the
same message (0 is infinity), then the length of an id prefix and the prefix: the bound is
the point ``(timestamp, prefix padded with zero bytes)``, and a range holds the items at or
above its lower bound and below its upper one.

The responder (the relay) keeps no state between messages: each one is answered from the
items alone (:func:`respond`). The initiator's side (:func:`initiate`, :func:`reconcile`) is
here too, for ``fitrelay sync`` and for tests.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
from collections.abc import Iterable

__all__ = [
    "FINGERPRINT_SIZE",
    "ID_SIZE",
    "INFINITY",
    "PROTOCOL_VERSION",
    "Items",
    "Mode",
    "NegentropyError",
    "decode_varint",
    "encode_varint",
    "fingerprint",
    "initiate",
    "reconcile",
    "respond",
]

PROTOCOL_VERSION = 0x61
ID_SIZE = 32
FINGERPRINT_SIZE = 16
INFINITY = 2**64 - 1
"""The timestamp of the bound past every item."""
BUCKETS = 16
"""A mismatched range is split into this many fingerprinted sub-ranges, or sent as an id
list when it holds fewer than twice as many items."""
_FRAME_MARGIN = 200
"""Room kept under a frame size limit for the closing fingerprint range."""
_MODULUS = 2**256
_MIN_FRAME = 4_096


class Mode(enum.IntEnum):
    SKIP = 0
    FINGERPRINT = 1
    ID_LIST = 2


class NegentropyError(ValueError):
    """A message that is not a valid negentropy message."""


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("a varint is not negative")
    groups = [n & 0x7F]
    n >>= 7
    while n:
        groups.append(0x80 | (n & 0x7F))
        n >>= 7
    groups.reverse()
    return bytes(groups)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = 0
    for length in range(10):
        if pos + length >= len(data):
            raise NegentropyError("message ends inside a varint")
        byte = data[pos + length]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + length + 1
    raise NegentropyError("varint longer than 64 bits")


def fingerprint(id_sum: int, count: int) -> bytes:
    """The fingerprint of ``count`` ids whose little-endian values add up to ``id_sum``."""
    data = (id_sum % _MODULUS).to_bytes(ID_SIZE, "little") + encode_varint(count)
    return hashlib.sha256(data).digest()[:FINGERPRINT_SIZE]


def _key(timestamp: int, id_prefix: bytes) -> bytes:
    """A point of the item order as bytes that sort the same way."""
    return timestamp.to_bytes(8, "big") + id_prefix.ljust(ID_SIZE, b"\0")


class Items:
    """A sealed set of ``(timestamp, id)`` items, sorted, with prefix sums of the ids so that
    any range's fingerprint costs one subtraction and a hash."""

    __slots__ = ("_keys", "_sums")

    def __init__(self, items: Iterable[tuple[int, bytes]]) -> None:
        keys = []
        for timestamp, event_id in items:
            if len(event_id) != ID_SIZE or not 0 <= timestamp < INFINITY:
                raise ValueError("an item is a timestamp below 2**64 - 1 and a 32-byte id")
            keys.append(timestamp.to_bytes(8, "big") + event_id)
        keys.sort()
        self._keys = keys
        self._sums = list(
            itertools.accumulate((int.from_bytes(k[8:], "little") for k in keys), initial=0)
        )

    def __len__(self) -> int:
        return len(self._keys)

    def id(self, index: int) -> bytes:
        return self._keys[index][8:]

    def ids(self, lower: int, upper: int) -> list[bytes]:
        return [key[8:] for key in self._keys[lower:upper]]

    def fingerprint(self, lower: int, upper: int) -> bytes:
        return fingerprint(self._sums[upper] - self._sums[lower], upper - lower)

    def lower_bound(self, lower: int, bound: tuple[int, bytes]) -> int:
        """The index of the first item at or after ``bound``, searching from ``lower``."""
        return bisect.bisect_left(self._keys, _key(*bound), lower)

    def bound_at(self, index: int) -> tuple[int, bytes]:
        """The bound that sits exactly at the item at ``index``."""
        key = self._keys[index]
        return int.from_bytes(key[:8], "big"), key[8:]

    def minimal_bound(self, index: int) -> tuple[int, bytes]:
        """The shortest bound above the item before ``index`` and at or below the one at it."""
        prev, curr = self._keys[index - 1], self._keys[index]
        timestamp = int.from_bytes(curr[:8], "big")
        if prev[:8] != curr[:8]:
            return timestamp, b""
        shared = 0
        while prev[8 + shared] == curr[8 + shared]:
            shared += 1
        return timestamp, curr[8 : 8 + shared + 1]


class _Writer:
    """The bounds written into one message, with the timestamp they are relative to."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def bound(self, bound: tuple[int, bytes]) -> bytes:
        timestamp, prefix = bound
        if timestamp == INFINITY:
            self.last = INFINITY
            encoded = encode_varint(0)
        else:
            encoded = encode_varint(timestamp - self.last + 1)
            self.last = timestamp
        return encoded + encode_varint(len(prefix)) + prefix

    def split(self, items: Items, lower: int, upper: int, upper_bound: tuple[int, bytes]) -> bytes:
        """The ranges that describe ``items[lower:upper]`` to a side that disagrees on it."""
        count = upper - lower
        if count < BUCKETS * 2:
            return (
                self.bound(upper_bound)
                + encode_varint(Mode.ID_LIST)
                + encode_varint(count)
                + b"".join(items.ids(lower, upper))
            )
        out = bytearray()
        per_bucket, extra = divmod(count, BUCKETS)
        curr = lower
        for bucket in range(BUCKETS):
            size = per_bucket + (1 if bucket < extra else 0)
            digest = items.fingerprint(curr, curr + size)
            curr += size
            bound = upper_bound if curr == upper else items.minimal_bound(curr)
            out += self.bound(bound) + encode_varint(Mode.FINGERPRINT) + digest
        return bytes(out)


class _Reader:
    __slots__ = ("data", "last", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.last = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def varint(self) -> int:
        value, self.pos = decode_varint(self.data, self.pos)
        return value

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise NegentropyError("message ends inside a range")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def bound(self) -> tuple[int, bytes]:
        encoded = self.varint()
        if encoded == 0 or self.last == INFINITY:
            timestamp = INFINITY
        else:
            timestamp = self.last + encoded - 1
            if timestamp >= INFINITY:
                raise NegentropyError("bound timestamp out of range")
        self.last = timestamp
        length = self.varint()
        if length > ID_SIZE:
            raise NegentropyError("bound id prefix longer than 32 bytes")
        return timestamp, self.take(length)


def _check_frame_limit(frame_limit: int) -> None:
    if frame_limit and frame_limit < _MIN_FRAME:
        raise ValueError(f"a frame size limit is 0 or at least {_MIN_FRAME} bytes")


def initiate(items: Items, frame_limit: int = 0) -> bytes:
    """The initiator's first message: every item, as fingerprints (or ids, when few)."""
    _check_frame_limit(frame_limit)
    return bytes([PROTOCOL_VERSION]) + _Writer().split(items, 0, len(items), (INFINITY, b""))


def respond(items: Items, message: bytes, frame_limit: int = 0) -> bytes:
    """The responder's answer to ``message``. A message of another protocol version in the
    0x60 to 0x6F range is answered with just the version byte this side speaks.

    Raises:
        NegentropyError: ``message`` is not a negentropy message.
    """
    _check_frame_limit(frame_limit)
    if not message:
        raise NegentropyError("empty message")
    version = message[0]
    if not 0x60 <= version <= 0x6F:
        raise NegentropyError("not a negentropy message")
    if version != PROTOCOL_VERSION:
        return bytes([PROTOCOL_VERSION])
    return _answer(items, message, frame_limit, None)


def reconcile(
    items: Items, message: bytes, frame_limit: int = 0
) -> tuple[bytes | None, list[bytes], list[bytes]]:
    """The initiator's step: the next message (None once the sets are reconciled), the ids
    it has and the other side lacks, and the ids it lacks.

    Raises:
        NegentropyError: ``message`` is not a version 1 negentropy message.
    """
    _check_frame_limit(frame_limit)
    if not message or message[0] != PROTOCOL_VERSION:
        raise NegentropyError("the other side does not speak negentropy protocol version 1")
    have: list[bytes] = []
    need: list[bytes] = []
    out = _answer(items, message, frame_limit, (have, need))
    return (out if len(out) > 1 else None), have, need


def _answer(
    items: Items,
    message: bytes,
    frame_limit: int,
    found: tuple[list[bytes], list[bytes]] | None,
) -> bytes:
    """One round: read each range of ``message``, write what this side says about it.
    ``found`` collects (have, need) on the initiator's side; the responder has none."""
    reader = _Reader(message, 1)
    writer = _Writer()
    out = bytearray([PROTOCOL_VERSION])
    prev_index = 0
    prev_bound: tuple[int, bytes] = (0, b"")
    skip = False
    emitted = 0
    """The index at the upper bound of the last range written to ``out``."""
    budget = frame_limit - _FRAME_MARGIN if frame_limit else 0
    while not reader.done:
        part = bytearray()
        truncated = False
        curr_bound = reader.bound()
        mode = reader.varint()
        lower = prev_index
        upper = items.lower_bound(prev_index, curr_bound)
        if upper < lower:
            raise NegentropyError("ranges out of order")
        if mode == Mode.SKIP:
            skip = True
        elif mode == Mode.FINGERPRINT:
            theirs = reader.take(FINGERPRINT_SIZE)
            if theirs == items.fingerprint(lower, upper):
                skip = True
            else:
                if skip:
                    skip = False
                    part += writer.bound(prev_bound) + encode_varint(Mode.SKIP)
                part += writer.split(items, lower, upper, curr_bound)
        elif mode == Mode.ID_LIST:
            count = reader.varint()
            their_ids = {reader.take(ID_SIZE) for _ in range(count)}
            if found is not None:
                have, need = found
                for event_id in items.ids(lower, upper):
                    if event_id in their_ids:
                        their_ids.discard(event_id)
                    else:
                        have.append(event_id)
                need.extend(their_ids)
                skip = True
            else:
                if skip:
                    skip = False
                    part += writer.bound(prev_bound) + encode_varint(Mode.SKIP)
                end = upper
                room = (budget - len(out) - len(part) - 64) // ID_SIZE if budget else upper
                if budget and upper - lower > room:
                    end = lower + max(0, room)
                    truncated = True
                part += (
                    writer.bound(items.bound_at(end) if truncated else curr_bound)
                    + encode_varint(Mode.ID_LIST)
                    + encode_varint(end - lower)
                    + b"".join(items.ids(lower, end))
                )
                upper = end
        else:
            raise NegentropyError(f"unknown range mode {mode}")
        if budget and len(out) + len(part) > budget:
            truncated = True  # out of room: the rest goes in one fingerprint
            upper = emitted
        else:
            out += part
            if part:
                emitted = upper
        if truncated:
            # One fingerprint for everything after what was written; the other side answers
            # it in the next round.
            out += (
                writer.bound((INFINITY, b""))
                + encode_varint(Mode.FINGERPRINT)
                + items.fingerprint(upper, len(items))
            )
            break
        prev_index = upper
        prev_bound = curr_bound
    return bytes(out)
