"""Export one table or view of schema ``fitness`` as CSV or Parquet, streamed.

Rows are read from a server-side cursor, :data:`BATCH_ROWS` at a time. CSV is written so
that pandas, R or a spreadsheet reads each column as its type: times in ISO 8601 in UTC with
a ``Z`` (``2024-01-11T10:30:15.250000Z``), dates as ``2024-01-11``, booleans as ``true`` and
``false``, arrays and JSON as JSON text (``["chest","push"]``), numbers with every digit
needed to read them back exactly, and NULL as the empty field. Parquet is written through
pyarrow (the ``parquet`` extra), one row group per batch, with column types mapped from
PostgreSQL's (:data:`PARQUET_TYPES`): ``timestamptz`` becomes ``timestamp[us, UTC]``,
``text[]`` becomes ``list<string>``, ``date`` becomes ``date32``, ``numeric`` becomes
``double``, and a type not in the table goes out as its text.

With a :class:`~indexer.pseudonym.Pseudonymizer`, pubkeys, event ids, d-tags and addresses
are replaced by keyed pseudonyms before they are written, in either format; with a
coarseness, every time and date is truncated to its day, week or month (and the raw
``start``/``end`` tag values to the unix time of that start).

Both read one consistent snapshot in a read-only transaction, so a table can be exported
while the indexer writes to it, and a ``fitrelay_reader`` DSN is enough. The table name is
checked against the catalog before it is used; it is never spliced in unchecked.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import importlib
import io
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import msgspec
from asyncpg.types import Type

from indexer.pseudonym import RAW_TIME_COLUMNS, Pseudonymizer, coarsen, coarsen_raw_time
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = [
    "BATCH_ROWS",
    "FORMATS",
    "PARQUET_TYPES",
    "SCHEMA",
    "export_table",
    "exportable_tables",
    "resolve_table",
]

SCHEMA = "fitness"
FORMATS = ("csv", "parquet")
BATCH_ROWS = 10_000
"""Rows per Parquet row group (and per cursor fetch)."""

_Q = load_queries("export.sql")

_SESSION = {
    "application_name": "fitrelay export-table",
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "extra_float_digits": "1",
    "jit": "off",
}
"""Settings that make the CSV text the same whatever the server's defaults: ISO times in UTC
and floats written with every digit needed to read them back exactly."""

PARQUET_TYPES: dict[str, str] = {
    "text": "string",
    "varchar": "string",
    "bpchar": "string",
    "name": "string",
    "json": "string",
    "jsonb": "string",
    "uuid": "string",
    "bool": "bool",
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "oid": "int64",
    "float4": "float32",
    "float8": "float64",
    "numeric": "float64",
    "date": "date32",
    "timestamptz": "timestamp[us, UTC]",
    "timestamp": "timestamp[us]",
    "bytea": "binary",
}
"""Built-in PostgreSQL type → Arrow type of a column. An array of ``x`` becomes a list of
``x``'s Arrow type; a type not listed here (or not built in) is exported as its text."""


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select_all(relation: str) -> str:
    """``SELECT * FROM relation`` for a relation :func:`resolve_table` returned.

    Built here rather than kept in ``sql/queries``: a table name cannot be a bind parameter,
    so the statement would be a template to fill in anyway, and keeping it beside the
    quoting and the catalog check makes the one place an identifier enters SQL easy to see.
    """
    return f"SELECT * FROM {relation}"


async def exportable_tables(conn: Conn) -> list[str]:
    """The tables and views of schema ``fitness``, sorted by name."""
    rows = await conn.fetch(_Q["list_tables"], SCHEMA)
    return [str(row["relname"]) for row in rows]


async def resolve_table(conn: Conn, name: str) -> str:
    """``fitness."name"`` for a table or view that exists; ``ValueError`` listing the valid
    names otherwise. Accepts the name with or without the ``fitness.`` prefix."""
    bare = name.removeprefix(f"{SCHEMA}.")
    valid = await exportable_tables(conn)
    if bare not in valid:
        listing = ", ".join(valid) if valid else f"none (is schema {SCHEMA} migrated?)"
        raise ValueError(f"unknown table or view {name!r} in schema {SCHEMA}; valid: {listing}")
    return f"{_quote_ident(SCHEMA)}.{_quote_ident(bare)}"


async def export_table(
    dsn: str,
    name: str,
    fmt: str,
    out: BinaryIO | Path,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    coarsen_dates: str | None = None,
) -> int:
    """Write table or view ``name`` of schema ``fitness`` to ``out`` as ``fmt`` (``csv``
    with a header row, or ``parquet``); returns the number of rows written.

    ``pseudonymizer`` replaces pubkeys, ids, d-tags and addresses by their pseudonyms;
    ``coarsen_dates`` (``day``, ``week`` or ``month``) truncates every time and date.

    ``ValueError`` for an unknown format, coarseness or name (before anything is written);
    for Parquet, ``RuntimeError`` naming the extra to install when pyarrow is missing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if coarsen_dates is not None:
        coarsen(dt.date(2000, 1, 1), coarsen_dates)  # checks the unit before connecting
    pa: Any = None
    pq: Any = None
    if fmt == "parquet":
        pa, pq = _pyarrow()
    conn = await asyncpg.connect(dsn, server_settings=_SESSION)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            relation = await resolve_table(conn, name)
            stmt = await conn.prepare(_select_all(relation))
            attributes = stmt.get_attributes()
            masks = [_mask(a.name, pseudonymizer, coarsen_dates) for a in attributes]
            if fmt == "csv":
                return await _csv(stmt, attributes, masks, out)
            return await _parquet(stmt, attributes, masks, out, pa, pq)
    finally:
        await conn.close()


Convert = Callable[[Any], Any]


def _mask(name: str, pseudonymizer: Pseudonymizer | None, unit: str | None) -> Convert | None:
    """What hides column ``name``'s values before they are written, None for nothing."""
    hide = None if pseudonymizer is None else pseudonymizer.column(name)
    if unit is None:
        return hide
    if name in RAW_TIME_COLUMNS:
        return lambda value: coarsen_raw_time(value, unit)
    if hide is None:
        return lambda value: coarsen(value, unit)
    pseudonymize = hide
    return lambda value: coarsen(pseudonymize(value), unit)


async def _rows(
    stmt: asyncpg.prepared_stmt.PreparedStatement[Any], masks: Sequence[Convert | None]
) -> Any:
    """Batches of rows (lists of values) with ``masks`` applied, from a cursor."""
    cursor = await stmt.cursor()
    while True:
        batch = await cursor.fetch(BATCH_ROWS)
        if not batch:
            return
        rows = [list(record) for record in batch]
        for index, mask in enumerate(masks):
            if mask is not None:
                for row in rows:
                    row[index] = mask(row[index])
        yield rows


_json = msgspec.json.Encoder(decimal_format="number")


def _csv_field(value: Any) -> str:
    """The CSV text of one value, as pandas and other readers take it for its type."""
    match value:
        case None:
            return ""
        case str():
            return value
        case bool():
            return "true" if value else "false"
        case float():
            return repr(value)
        case dt.datetime() if value.tzinfo is not None:
            # Always with microseconds: one column, one layout, whatever the values.
            utc = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
            return utc.replace("+00:00", "Z")
        case dt.date() | dt.datetime() | dt.time():
            return value.isoformat()
        case decimal.Decimal() if value.is_finite():
            return format(value, "f")
        case list() | dict():
            return _json.encode(value).decode()
        case bytes():
            return "\\x" + value.hex()
    return str(value)


@contextlib.contextmanager
def _text_sink(out: BinaryIO | Path) -> Iterator[io.TextIOWrapper]:
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="") as f:
            yield f
        return
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        yield text
        text.flush()
    finally:
        text.detach()


async def _csv(
    stmt: asyncpg.prepared_stmt.PreparedStatement[Any],
    attributes: Sequence[Any],
    masks: Sequence[Convert | None],
    out: BinaryIO | Path,
) -> int:
    """Write a header and the rows as CSV (RFC 4180 quoting, ``\\n`` line ends)."""
    written = 0
    with _text_sink(out) as sink:
        writer = csv.writer(sink, lineterminator="\n")
        writer.writerow([a.name for a in attributes])
        async for rows in _rows(stmt, masks):
            writer.writerows([_csv_field(v) for v in row] for row in rows)
            written += len(rows)
    if not isinstance(out, Path):
        out.flush()
    return written


def _pyarrow() -> tuple[Any, Any]:
    try:
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise RuntimeError("Parquet export needs pyarrow: pip install 'fitrelay[parquet]'") from exc
    return pa, pq


def _element(pg_type: Type) -> str | None:
    """The element type's name of an array type, None for any other type."""
    if pg_type.kind != "array":
        return None
    # Built-in arrays are reported as "text[]", others by their catalog name "_x".
    return pg_type.name.removesuffix("[]") if pg_type.name.endswith("[]") else pg_type.name[1:]


def _scalar(name: str, schema: str) -> str | None:
    """The Arrow type name for a scalar PostgreSQL type, None when it goes out as text."""
    return PARQUET_TYPES.get(name) if schema == "pg_catalog" else None


def _arrow_type(pa: Any, pg_type: Type) -> Any:
    element = _element(pg_type)
    if element is not None:
        return pa.list_(_arrow_scalar(pa, _scalar(element, pg_type.schema)))
    return _arrow_scalar(pa, _scalar(pg_type.name, pg_type.schema))


def _arrow_scalar(pa: Any, mapped: str | None) -> Any:
    match mapped:
        case "bool":
            return pa.bool_()
        case "int16":
            return pa.int16()
        case "int32":
            return pa.int32()
        case "int64":
            return pa.int64()
        case "float32":
            return pa.float32()
        case "float64":
            return pa.float64()
        case "date32":
            return pa.date32()
        case "timestamp[us, UTC]":
            return pa.timestamp("us", tz="UTC")
        case "timestamp[us]":
            return pa.timestamp("us")
        case "binary":
            return pa.binary()
    return pa.string()


def _scalar_converter(name: str, schema: str) -> Callable[[Any], Any] | None:
    mapped = _scalar(name, schema)
    if mapped == "float64" and name == "numeric":
        return float
    if mapped is None or name in ("json", "jsonb", "uuid"):
        return str
    return None


def _converter(pg_type: Type) -> Callable[[Any], Any] | None:
    """How to turn asyncpg's value into what pyarrow takes for the mapped type, or None when
    it takes it as is."""
    element = _element(pg_type)
    inner = _scalar_converter(element or pg_type.name, pg_type.schema)
    if inner is None:
        return None
    convert = inner
    if element is not None:
        return lambda value: (
            None if value is None else [None if v is None else convert(v) for v in value]
        )
    return lambda value: None if value is None else convert(value)


async def _parquet(
    stmt: asyncpg.prepared_stmt.PreparedStatement[Any],
    attributes: Sequence[Any],
    masks: Sequence[Convert | None],
    out: BinaryIO | Path,
    pa: Any,
    pq: Any,
) -> int:
    schema = pa.schema([pa.field(a.name, _arrow_type(pa, a.type)) for a in attributes])
    converters = [_converter(a.type) for a in attributes]
    sink: Any = os.fspath(out) if isinstance(out, Path) else out
    written = 0
    writer = pq.ParquetWriter(sink, schema)
    try:
        async for rows in _rows(stmt, masks):
            writer.write_table(_batch(pa, schema, converters, rows))
            written += len(rows)
    finally:
        writer.close()
    if not isinstance(out, Path):
        out.flush()
    return written


def _batch(
    pa: Any,
    schema: Any,
    converters: Sequence[Callable[[Any], Any] | None],
    rows: Sequence[Sequence[Any]],
) -> Any:
    columns = []
    for index, convert in enumerate(converters):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        columns.append(pa.array(values, type=schema.field(index).type))
    return pa.Table.from_arrays(columns, schema=schema)
