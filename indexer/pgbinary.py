"""PostgreSQL's binary COPY format, written field by field (what :mod:`indexer.rowcopy`
sends for the large tables).

A COPY payload is a header, one tuple per row (a 16-bit field count, then each field as a
32-bit length and its bytes, length -1 for NULL) and a trailer. The encoders here return
one field (length included) as ``bytes``, so that a row is a ``b"".join`` of fields and
the parts of a row that repeat (a set's mapped values, an exercise reference) can be
encoded once and cached as bytes. Types: ``text`` (UTF-8), ``int4``, ``float8``, ``bool``,
``timestamptz`` (microseconds since 2000-01-01 UTC) and ``text[]``.

A value the format cannot carry (an integer outside int4, text that is not valid UTF-8,
a time outside Python's datetime range, which the entry-by-entry path would treat
differently) raises :class:`Unrepresentable`, and the caller applies the run entry by entry.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence

__all__ = [
    "FALSE",
    "NULL",
    "TRUE",
    "Unrepresentable",
    "boolean",
    "float8",
    "int4",
    "payload",
    "row_header",
    "text",
    "text_array",
    "timestamptz",
    "timestamptz_micros",
]

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
TRUE = b"\x00\x00\x00\x01\x01"
FALSE = b"\x00\x00\x00\x01\x00"

_TEXT_OID = 25
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_PG_EPOCH_UNIX = 946_684_800
_MIN_MICROS = (dt.datetime.min.replace(tzinfo=dt.UTC) - _PG_EPOCH) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime.max.replace(tzinfo=dt.UTC) - _PG_EPOCH) // dt.timedelta(microseconds=1)

_len = struct.Struct(">i").pack
_int4 = struct.Struct(">ii").pack
_float8 = struct.Struct(">id").pack
_int8 = struct.Struct(">iq").pack
_array_head = struct.Struct(">iiiiii").pack
_SMALL = [_int4(4, i) for i in range(1024)]
"""Encoded int4 fields for the small numbers (positions, tag indexes, set numbers)."""


class Unrepresentable(Exception):
    """A value the COPY path cannot carry (see the module notes)."""


def row_header(columns: int) -> bytes:
    """The field count that opens each tuple of a table with ``columns`` columns."""
    return struct.pack(">h", columns)


def payload(rows: Sequence[bytes]) -> bytes:
    """A whole COPY ... (FORMAT binary) input: header, the encoded tuples, trailer."""
    return b"".join((HEADER, *rows, TRAILER))


def text(value: str | None) -> bytes:
    if value is None:
        return NULL
    try:
        data = value.encode()
    except UnicodeEncodeError as exc:
        raise Unrepresentable(f"text {value[:40]!r}") from exc
    return _len(len(data)) + data


def int4(value: int | None) -> bytes:
    if value is None:
        return NULL
    if 0 <= value < 1024:
        return _SMALL[value]
    try:
        return _int4(4, value)
    except struct.error as exc:
        raise Unrepresentable(f"int4 {value!r}") from exc


def float8(value: float | None) -> bytes:
    if value is None:
        return NULL
    try:
        return _float8(8, value)
    except (struct.error, OverflowError) as exc:
        raise Unrepresentable(f"float8 {value!r}") from exc


def boolean(value: bool | None) -> bytes:
    if value is None:
        return NULL
    return TRUE if value else FALSE


def timestamptz_micros(seconds: float) -> int:
    """``to_timestamp(seconds)`` as PostgreSQL computes it: rint of the microseconds since
    2000-01-01 in double precision."""
    try:
        micros = round((float(seconds) - _PG_EPOCH_UNIX) * 1_000_000.0)
    except (OverflowError, ValueError) as exc:
        raise Unrepresentable(f"to_timestamp({seconds!r})") from exc
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise Unrepresentable(f"to_timestamp({seconds!r})")
    return micros


def timestamptz(seconds: float | None) -> bytes:
    if seconds is None:
        return NULL
    return _int8(8, timestamptz_micros(seconds))


def text_array(values: Sequence[str]) -> bytes:
    """A one-dimensional ``text[]`` without NULLs (``{}`` when empty)."""
    if not values:
        return b"\x00\x00\x00\x0c" + b"\x00\x00\x00\x00" * 2 + _TEXT_OID.to_bytes(4, "big")
    elements = [text(v) for v in values]
    body = b"".join(elements)
    head = _array_head(20 + len(body), 1, 0, _TEXT_OID, len(values), 1)
    return head + body
