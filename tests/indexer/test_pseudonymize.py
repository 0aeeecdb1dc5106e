"""``export-table --pseudonymize``: keyed pseudonyms of pubkeys, ids, d-tags and addresses,
stable under one secret, joinable across tables, typed CSV, coarse dates, the reader role."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from indexer.export import export_table
from indexer.follower import reindex
from indexer.pseudonym import SECRET_ENV, Pseudonymizer, coarsen, coarsen_raw_time, load_secret
from relay.nostr.event import decode_event
from relay.storage.postgres import Store
from tests.conftest import READER, as_user
from tests.indexer.scenario import EVENTS
from tests.server.test_cli_archive import _env, fitrelay

SECRET = b"an operator secret of some length"
OTHER = b"another operator secret entirely"
TABLES = ("exercises", "templates", "template_sets", "workouts", "workout_sets", "strength_sets")


@pytest.fixture
async def indexed(store: Store, db_dsn: str) -> str:
    """The scenario's events stored and indexed; the reader role's DSN."""
    for event in EVENTS.values():
        raw = json.dumps(event)
        await store.ingest([decode_event(raw.encode())], [raw])
    await reindex(db_dsn)
    return as_user(db_dsn, READER)


def raw_identifiers() -> set[str]:
    return {e["pubkey"] for e in EVENTS.values()} | {e["id"] for e in EVENTS.values()}


async def export_csv(dsn: str, table: str, secret: bytes | None, **kw: Any) -> list[dict[str, str]]:
    out = io.BytesIO()
    hide = None if secret is None else Pseudonymizer(secret)
    await export_table(dsn, table, "csv", out, pseudonymizer=hide, **kw)
    return list(csv.DictReader(io.StringIO(out.getvalue().decode())))


async def test_pseudonyms_hide_every_raw_id_and_are_stable(indexed: str) -> None:
    for table in TABLES:
        plain = await export_csv(indexed, table, None)
        first = await export_csv(indexed, table, SECRET)
        again = await export_csv(indexed, table, SECRET)
        other = await export_csv(indexed, table, OTHER)
        assert plain, table  # the scenario fills every table checked
        assert first == again, table
        text = json.dumps(first)
        leaked = {raw for raw in raw_identifiers() if raw in text}
        assert not leaked, (table, leaked)
        assert any(raw in json.dumps(plain) for raw in raw_identifiers())
        for column in ("pubkey", "event_id", "d", "exercise_ref"):
            if column in plain[0] and any(row[column] for row in plain):
                assert [r[column] for r in first] != [r[column] for r in plain], column
                assert [r[column] for r in first] != [r[column] for r in other], column


async def test_joins_between_pseudonymized_tables_still_match(indexed: str) -> None:
    def joined(workouts: list[dict[str, str]], sets: list[dict[str, str]]) -> list[Any]:
        by_id = {w["event_id"]: w for w in workouts}
        return sorted(
            (by_id[s["workout_event_id"]]["title"], s["position"], s["weight_kg"]) for s in sets
        )

    def by_address(exercises: list[dict[str, str]], sets: list[dict[str, str]]) -> list[Any]:
        titles = {f"33401:{e['pubkey']}:{e['d']}": e["title"] for e in exercises}
        return sorted(
            (titles[s["exercise_ref"]], s["position"]) for s in sets if s["exercise_ref"] in titles
        )

    plain = [await export_csv(indexed, t, None) for t in ("workouts", "workout_sets", "exercises")]
    hidden = [
        await export_csv(indexed, t, SECRET) for t in ("workouts", "workout_sets", "exercises")
    ]
    assert joined(plain[0], plain[1]) and joined(hidden[0], hidden[1]) == joined(plain[0], plain[1])
    resolved = by_address(plain[2], plain[1])
    assert resolved and by_address(hidden[2], hidden[1]) == resolved


async def test_csv_is_typed_for_a_reader(indexed: str) -> None:
    rows = await export_csv(indexed, "exercises", None)
    sets = await export_csv(indexed, "workout_sets", None)
    assert all(r["created_at"].endswith("Z") for r in rows)
    for row in rows:
        stamp = dt.datetime.fromisoformat(row["created_at"])
        assert stamp.tzinfo is not None
        assert isinstance(json.loads(row["hashtags"]), list)
        assert isinstance(json.loads(row["format"]), list)
    assert {r["set_number_given"] for r in sets} <= {"true", "false"}
    assert all(isinstance(json.loads(r["values_raw"]), list) for r in sets)
    assert any(r["weight_kg"] == "" for r in sets) or all(float(r["weight_kg"]) >= 0 for r in sets)


async def test_csv_types_are_inferred_by_a_typed_reader(indexed: str) -> None:
    """pyarrow's CSV reader (pandas is not a test dependency) infers each column's type from
    the text alone, as pandas.read_csv does."""
    out = io.BytesIO()
    await export_table(indexed, "workouts", "csv", out, pseudonymizer=Pseudonymizer(SECRET))
    table = pa_csv.read_csv(io.BytesIO(out.getvalue()))
    created = table.schema.field("created_at").type
    assert pa.types.is_timestamp(created) and created.tz == "UTC"
    assert table.schema.field("completed").type == pa.bool_()
    assert table.schema.field("kind").type == pa.int64()
    assert pa.types.is_floating(table.schema.field("duration_s").type)


async def test_parquet_pseudonymized_matches_csv(indexed: str, tmp_path: Path) -> None:
    path = tmp_path / "w.parquet"
    await export_table(indexed, "workouts", "parquet", path, pseudonymizer=Pseudonymizer(SECRET))
    table = pq.read_table(path).to_pylist()
    rows = await export_csv(indexed, "workouts", SECRET)
    assert sorted(r["event_id"] for r in table) == sorted(r["event_id"] for r in rows)
    assert not {raw for raw in raw_identifiers() if raw in repr(table)}


async def test_coarsened_dates_are_truncated(indexed: str) -> None:
    exact = await export_csv(indexed, "workouts", None)
    for unit in ("day", "week", "month"):
        coarse = await export_csv(indexed, "workouts", None, coarsen_dates=unit)
        assert len(coarse) == len(exact)
        for before, after in zip(
            sorted(exact, key=lambda r: r["event_id"]),
            sorted(coarse, key=lambda r: r["event_id"]),
            strict=True,
        ):
            t = dt.datetime.fromisoformat(before["created_at"])
            assert dt.datetime.fromisoformat(after["created_at"]) == coarsen(t, unit)
            if after["started_at"] and before["start_raw"].isdigit():
                started = dt.datetime.fromisoformat(after["started_at"])
                assert int(after["start_raw"]) == int(started.timestamp())
        assert any(r["start_raw"] for r in coarse)
    assert coarsen(dt.datetime(2025, 1, 9, 13, 5, tzinfo=dt.UTC), "week") == dt.datetime(
        2025, 1, 6, tzinfo=dt.UTC
    )
    assert coarsen(dt.date(2025, 2, 17), "month") == dt.date(2025, 2, 1)


def test_addresses_keep_their_shape_and_other_text_is_left_alone() -> None:
    hide = Pseudonymizer(SECRET)
    pk, d = "ab" * 32, "local:m8l4p7sp"
    assert hide.text(f"33402:{pk}:{d}") == f"33402:{hide.hex(pk)}:{hide.d(d)}"
    assert hide.text(f"33402::{d}") == f"33402::{hide.d(d)}"
    assert hide.text(f"33401:local:{d}") == f"33401:local:{hide.d(d)}"
    assert hide.text(f"note about {pk.upper()}.") == f"note about {hide.hex(pk)}."
    for kept in ("00:28:15", "05:39", "Morning 5K", "1:2:3"):
        assert hide.text(kept) == kept
    assert hide.column("exercise_d")(["squat", None]) == [hide.d("squat"), None]
    assert hide.hex(pk) != Pseudonymizer(OTHER).hex(pk)


def test_raw_times_are_coarsened_too() -> None:
    at = int(dt.datetime(2025, 3, 19, 17, 45, 12, tzinfo=dt.UTC).timestamp())
    monday = str(int(dt.datetime(2025, 3, 17, tzinfo=dt.UTC).timestamp()))
    assert coarsen_raw_time(str(at), "week") == monday
    assert coarsen_raw_time(str(at * 1000 + 250), "week") == monday  # milliseconds
    assert coarsen_raw_time("yesterday", "day") is None
    assert coarsen_raw_time("", "day") == ""


def test_there_is_no_default_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=SECRET_ENV):
        load_secret(None, {})
    with pytest.raises(ValueError, match="shorter"):
        load_secret(None, {SECRET_ENV: "short"})
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    assert load_secret(secret, {SECRET_ENV: OTHER.decode()}) == SECRET
    configured = tmp_path / "configured"
    configured.write_bytes(OTHER)
    assert load_secret(None, {}, configured) == OTHER
    assert load_secret(None, {SECRET_ENV: SECRET.decode()}, configured) == SECRET
    assert load_secret(secret, {}, configured) == SECRET


def _fitrelay(
    args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*fitrelay(), "--log-level", "WARNING", *args],
        cwd=cwd,
        env={**_env(), **env},
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_commands_run_as_the_reader_role(indexed: str, tmp_path: Path) -> None:
    events = _fitrelay(["export", "--db-dsn", indexed], tmp_path, {})
    assert events.returncode == 0, events.stderr.decode()
    ids = {json.loads(line)["id"] for line in events.stdout.splitlines()}
    assert ids and ids <= {e["id"] for e in EVENTS.values()}

    table = ["export-table", "workout_sets", "--db-dsn", indexed, "--pseudonymize"]
    refused = _fitrelay(table, tmp_path, {})
    assert refused.returncode == 2 and SECRET_ENV.encode() in refused.stderr
    done = _fitrelay(table, tmp_path, {SECRET_ENV: SECRET.decode()})
    assert done.returncode == 0, done.stderr.decode()
    (tmp_path / "key").write_bytes(SECRET)
    (tmp_path / "config.toml").write_text('[export]\npseudonym_secret_file = "key"\n')
    configured = _fitrelay(table, tmp_path, {})
    assert configured.returncode == 0, configured.stderr.decode()
    assert configured.stdout == done.stdout
    assert done.stdout.decode() == "".join(
        f"{line}\n" for line in _csv_lines(await export_csv(indexed, "workout_sets", SECRET))
    )


def _csv_lines(rows: list[dict[str, str]]) -> list[str]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().splitlines()
