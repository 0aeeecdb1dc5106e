"""``indexer.export.export_table``: CSV and Parquet round trips, names checked first."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer import export
from indexer.export import export_table, exportable_tables

X = "e" * 64
A = "a" * 64
AT = dt.datetime(2024, 1, 10, 10, 30, 15, 250000, tzinfo=dt.UTC)


async def add_exercise(db: asyncpg.Connection[Any], n: int, title: str | None) -> None:
    await db.execute(
        "INSERT INTO fitness.exercises (pubkey, d, event_id, created_at, title, format,"
        " format_units, format_units_raw, instructions, hashtags)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        X,
        f"ex-{n}",
        f"{n:064x}",
        AT + dt.timedelta(days=n),
        title,
        ["weight", "reps"],
        ["kg", None] if n == 1 else ["kg", "count"],
        ["kg", "count"],
        'Keep the back "straight", then push.\nBreathe.',
        ["legs", "a,b"] if n == 1 else [],
    )


async def add_runs(db: asyncpg.Connection[Any], count: int) -> None:
    for n in range(count):
        await db.execute(
            "INSERT INTO fitness.workouts (event_id, kind, pubkey, created_at, dialect, activity,"
            " notes, hashtags, distance_m, duration_s)"
            " VALUES ($1, 1301, $2, $3, 'runstr', $4, '', '{}', $5, 600)",
            f"{n + 100:064x}",
            A,
            AT + dt.timedelta(days=n),
            "running" if n % 2 else "walking",
            1000.0 * (n + 1),
        )


async def test_csv_round_trip(db: asyncpg.Connection[Any], db_dsn: str) -> None:
    await add_exercise(db, 1, "Squat")
    await add_exercise(db, 2, None)
    out = io.BytesIO()
    assert await export_table(db_dsn, "exercises", "csv", out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    columns = [
        r["column_name"]
        for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'fitness' AND table_name = 'exercises' ORDER BY ordinal_position"
        )
    ]
    assert rows[0] == columns
    by_d = {row[columns.index("d")]: dict(zip(columns, row, strict=True)) for row in rows[1:]}
    first, second = by_d["ex-1"], by_d["ex-2"]
    assert first["title"] == "Squat" and second["title"] == ""  # NULL is the empty field
    assert first["event_id"] == f"{1:064x}"
    assert first["created_at"] == "2024-01-11T10:30:15.250000Z"  # ISO 8601, always UTC
    assert first["instructions"] == 'Keep the back "straight", then push.\nBreathe.'
    assert first["hashtags"] == '["legs","a,b"]'  # arrays as JSON text
    assert first["format_units"] == '["kg",null]'
    assert second["hashtags"] == "[]"


async def test_csv_of_a_view_to_a_path(
    db: asyncpg.Connection[Any], db_dsn: str, tmp_path: Path
) -> None:
    await add_runs(db, 3)
    path = tmp_path / "cardio.csv"
    assert await export_table(db_dsn, "fitness.cardio_totals", "csv", path) == 2
    with path.open(newline="") as f:
        rows = {row["activity"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"running", "walking"}
    assert (rows["walking"]["workouts"], rows["walking"]["total_distance_m"]) == ("2", "4000.0")
    assert rows["running"]["first_at"] == "2024-01-11T10:30:15.250000Z"


async def test_csv_of_an_empty_table_is_its_header(db_dsn: str) -> None:
    out = io.BytesIO()
    assert await export_table(db_dsn, "workout_splits", "csv", out) == 0
    assert out.getvalue() == b"workout_event_id,split_number,elapsed_s,pace_s,distance_raw\n"


async def test_parquet_round_trip(db: asyncpg.Connection[Any], db_dsn: str) -> None:
    await add_exercise(db, 1, "Squat")
    await add_exercise(db, 2, None)
    out = io.BytesIO()
    assert await export_table(db_dsn, "exercises", "parquet", out) == 2
    table = pq.read_table(io.BytesIO(out.getvalue()))
    schema = table.schema
    assert schema.field("pubkey").type == pa.string()
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("format").type == pa.list_(pa.string())
    assert schema.field("hashtags").type == pa.list_(pa.string())
    rows = sorted(table.to_pylist(), key=lambda r: r["d"])
    expected = [
        dict(r)
        for r in await db.fetch("SELECT * FROM fitness.exercises ORDER BY d")  # same order
    ]
    assert rows == expected
    assert rows[0]["format_units"] == ["kg", None]
    assert rows[0]["created_at"] == AT + dt.timedelta(days=1)


async def test_parquet_types_of_a_view(db: asyncpg.Connection[Any], db_dsn: str) -> None:
    await add_runs(db, 2)
    await db.execute(
        "INSERT INTO fitness.exercises (pubkey, d, event_id, created_at, title, format,"
        " format_units, format_units_raw, instructions, hashtags)"
        " VALUES ($1, 'squat', $2, $3, 'Squat', '{}', '{}', '{}', '', '{}')",
        X,
        "9" * 64,
        AT,
    )
    await db.execute(
        "INSERT INTO fitness.workout_sets (workout_event_id, position, tag_index, exercise_ref,"
        " exercise_pubkey, exercise_d, exercise_event_id, set_number, set_number_given,"
        " values_raw, weight_kg, reps, set_type, mapped_by)"
        " VALUES ($1, 0, 3, $2, $3, 'squat', $4, 1, true, '{}', 100, 5, 'normal', 'format')",
        f"{100:064x}",
        f"33401:{X}:squat",
        X,
        "9" * 64,
    )
    out = io.BytesIO()
    assert await export_table(db_dsn, "weekly_volume_by_exercise", "parquet", out) == 1
    table = pq.read_table(io.BytesIO(out.getvalue()))
    types = {field.name: field.type for field in table.schema}
    assert types["week"] == pa.date32()
    assert types["sets"] == pa.int64()
    assert types["volume_kg"] == pa.float64()
    [row] = table.to_pylist()
    assert (row["week"], row["sets"], row["volume_kg"], row["title"]) == (
        dt.date(2024, 1, 8),
        1,
        500.0,
        "Squat",
    )
    out = io.BytesIO()
    assert await export_table(db_dsn, "template_usage", "parquet", out) == 0
    types = {f.name: f.type for f in pq.read_schema(io.BytesIO(out.getvalue()))}
    assert types["indexed"] == pa.bool_() and types["records"] == pa.int64()


async def test_parquet_is_written_in_row_groups(
    db: asyncpg.Connection[Any], db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH_ROWS", 2)
    await add_runs(db, 5)
    path = tmp_path / "workouts.parquet"
    assert await export_table(db_dsn, "workouts", "parquet", path) == 5
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_rows == 5
    assert parquet.metadata.num_row_groups == 3
    distances = sorted(parquet.read().column("distance_m").to_pylist())
    assert distances == [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]


async def test_parquet_of_an_empty_table_keeps_its_schema(db_dsn: str) -> None:
    out = io.BytesIO()
    assert await export_table(db_dsn, "workout_splits", "parquet", out) == 0
    table = pq.read_table(io.BytesIO(out.getvalue()))
    assert table.num_rows == 0
    assert table.schema.names == [
        "workout_event_id",
        "split_number",
        "elapsed_s",
        "pace_s",
        "distance_raw",
    ]
    assert table.schema.field("split_number").type == pa.int32()


async def test_unknown_names_are_refused_before_anything_is_written(db_dsn: str) -> None:
    for name in ("nope", "events", "workouts; DROP TABLE fitness.workouts", 'workouts"--'):
        out = io.BytesIO()
        with pytest.raises(ValueError, match="unknown table or view") as caught:
            await export_table(db_dsn, name, "csv", out)
        assert "workouts" in str(caught.value) and "personal_records" in str(caught.value)
        assert out.getvalue() == b""
    with pytest.raises(ValueError, match="unknown format 'xlsx'"):
        await export_table(db_dsn, "workouts", "xlsx", io.BytesIO())


async def test_exportable_tables_lists_the_fitness_schema(db: asyncpg.Connection[Any]) -> None:
    names = await exportable_tables(db)
    assert names == sorted(names)
    assert {"workouts", "workout_sets", "indexer_state", "cardio_totals"} <= set(names)
    assert "events" not in names and "schema_migrations" not in names


async def test_parquet_without_pyarrow_names_the_extra(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(RuntimeError, match=r"pip install 'fitrelay\[parquet\]'"):
        await export_table(db_dsn, "workouts", "parquet", io.BytesIO())


async def test_the_read_only_role_can_export(db: asyncpg.Connection[Any], db_dsn: str) -> None:
    await add_runs(db, 1)
    parts = urllib.parse.urlsplit(db_dsn)
    reader = urllib.parse.urlunsplit(
        parts._replace(netloc="fitrelay_reader@" + parts.netloc.rsplit("@", 1)[-1])
    )
    out = io.BytesIO()
    assert await export_table(reader, "workouts", "csv", out) == 1
    assert f"{100:064x}" in out.getvalue().decode()
