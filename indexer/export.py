"""Export one table or view of schema ``fitness`` as CSV or Parquet, streamed.

CSV goes through PostgreSQL's own ``COPY ... TO STDOUT (FORMAT csv, HEADER)``: arrays come
out in their PostgreSQL text form (``{chest,push}``), timestamps in ISO 8601 with a UTC
offset. Parquet is written through pyarrow (the ``parquet`` extra), one row group per batch
read from a server-side cursor, with column types mapped from PostgreSQL's
(:data:`PARQUET_TYPES`): ``timestamptz`` becomes ``timestamp[us, UTC]``, ``text[]`` becomes
``list<string>``, ``date`` becomes ``date32``, ``numeric`` becomes ``double``, and a type
not in the table goes out as its text.

Both read one consistent snapshot in a read-only transaction, so a table can be exported
while the indexer writes to it, and a ``fitrelay_reader`` DSN is enough. The table name is
checked against the catalog before it is used; it is never spliced in unchecked.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
from asyncpg.types import Type

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


async def export_table(dsn: str, name: str, fmt: str, out: BinaryIO | Path) -> int:
    """Write table or view ``name`` of schema ``fitness`` to ``out`` as ``fmt`` (``csv``
    with a header row, or ``parquet``); returns the number of rows written.

    ``ValueError`` for an unknown format or name (before anything is written); for Parquet,
    ``RuntimeError`` naming the extra to install when pyarrow is missing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    pa: Any = None
    pq: Any = None
    if fmt == "parquet":
        pa, pq = _pyarrow()
    conn = await asyncpg.connect(dsn, server_settings=_SESSION)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            relation = await resolve_table(conn, name)
            query = _select_all(relation)
            if fmt == "csv":
                return await _csv(conn, query, out)
            return await _parquet(conn, query, out, pa, pq)
    finally:
        await conn.close()


async def _csv(conn: asyncpg.Connection[Any], query: str, out: BinaryIO | Path) -> int:
    status = await conn.copy_from_query(query, output=out, format="csv", header=True)
    if not isinstance(out, Path):
        out.flush()
    # "COPY n"
    return int(status.rsplit(" ", 1)[-1])


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
    conn: asyncpg.Connection[Any], query: str, out: BinaryIO | Path, pa: Any, pq: Any
) -> int:
    stmt = await conn.prepare(query)
    attributes = stmt.get_attributes()
    schema = pa.schema([pa.field(a.name, _arrow_type(pa, a.type)) for a in attributes])
    converters = [_converter(a.type) for a in attributes]
    sink: Any = os.fspath(out) if isinstance(out, Path) else out
    written = 0
    writer = pq.ParquetWriter(sink, schema)
    try:
        cursor = await stmt.cursor()
        while True:
            rows = await cursor.fetch(BATCH_ROWS)
            if not rows:
                break
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
    rows: Sequence[asyncpg.Record],
) -> Any:
    columns = []
    for index, convert in enumerate(converters):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        columns.append(pa.array(values, type=schema.field(index).type))
    return pa.Table.from_arrays(columns, schema=schema)
