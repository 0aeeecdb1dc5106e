"""The binary COPY encoder (indexer/pgbinary.py): every type it writes, read back by
PostgreSQL as asyncpg's own encoder would have written it, and the values it refuses."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from indexer import pgbinary
from indexer.rowcopy import copy_binary, timestamp

_COLUMNS = ("t", "i", "f", "b", "ts", "a")
_TYPES = (
    pgbinary.text,
    pgbinary.int4,
    pgbinary.float8,
    pgbinary.boolean,
    pgbinary.timestamptz,
    pgbinary.text_array,
)
_ROWS: list[tuple[Any, ...]] = [
    ("plain", 0, 0.0, True, 0, ["a"]),
    ("ünïcode ☃ \t\n\\ quote'\"", 1023, -2.5, False, 1_700_000_000.123456, ["", "x y", "☃"]),
    ("", 1024, 1e300, None, 1_700_000_000.0000005, []),
    (None, -(2**31), 5e-324, None, None, ["{", "}", ",", "NULL"]),
    ("x" * 5000, 2**31 - 1, None, True, -86_400.25, ["z" * 300] * 20),
    (None, None, math.pi, None, 253_402_300_799.0, []),
]


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await asyncpg.connect(db_dsn)
    try:
        await c.execute(
            "CREATE TABLE fitness.pgbinary_probe (t text, i int4, f float8, b bool,"
            " ts timestamptz, a text[])"
        )
        yield c
    finally:
        await c.close()


async def _copy_encoded(conn: asyncpg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    head = pgbinary.row_header(len(_COLUMNS))
    encoded = [
        head + b"".join(encode(v) for encode, v in zip(_TYPES, row, strict=True)) for row in rows
    ]
    await copy_binary(conn, "pgbinary_probe", _COLUMNS, encoded)


async def test_encoded_rows_read_back_as_asyncpg_writes_them(
    conn: asyncpg.Connection[Any],
) -> None:
    await _copy_encoded(conn, _ROWS)
    ours = await conn.fetch("SELECT * FROM fitness.pgbinary_probe ORDER BY i NULLS LAST")
    await conn.execute("TRUNCATE fitness.pgbinary_probe")
    await conn.copy_records_to_table(
        "pgbinary_probe",
        schema_name="fitness",
        columns=list(_COLUMNS),
        records=[(*row[:4], timestamp(row[4]), row[5]) for row in _ROWS],
    )
    theirs = await conn.fetch("SELECT * FROM fitness.pgbinary_probe ORDER BY i NULLS LAST")
    assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
    assert len(ours) == len(_ROWS)
    by_i = {r["i"]: r for r in ours}
    assert by_i[0]["ts"] == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert by_i[1023]["a"] == ["", "x y", "☃"] and by_i[1024]["a"] == []


async def test_times_equal_to_timestamp_as_postgresql_computes_it(
    conn: asyncpg.Connection[Any],
) -> None:
    seconds = [0, 1.5, 1_700_000_000.123456, 1_700_000_000.0000005, -1.0000005, 4e9 + 0.7]
    await _copy_encoded(conn, [("", i, None, None, s, []) for i, s in enumerate(seconds)])
    rows = await conn.fetch(
        "SELECT ts = to_timestamp(s) AS same FROM fitness.pgbinary_probe"
        " JOIN unnest($1::float8[]) WITH ORDINALITY AS u (s, n) ON u.n - 1 = i",
        seconds,
    )
    assert [r["same"] for r in rows] == [True] * len(seconds)


async def test_a_text_with_nul_is_refused_by_the_server(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.DataError):
        await _copy_encoded(conn, [("a\x00b", 1, None, None, None, [])])


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (pgbinary.int4, 2**31),
        (pgbinary.int4, -(2**31) - 1),
        (pgbinary.float8, 10**400),
        (pgbinary.timestamptz, math.inf),
        (pgbinary.timestamptz, math.nan),
        (pgbinary.timestamptz, 1e15),
        (pgbinary.text, "\ud800"),
        (pgbinary.text_array, ["ok", "\udfff"]),
    ],
)
def test_values_the_format_cannot_carry_are_unrepresentable(encode: Any, value: Any) -> None:
    with pytest.raises(pgbinary.Unrepresentable):
        encode(value)
