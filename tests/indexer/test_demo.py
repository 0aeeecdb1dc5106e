"""``fitrelay demo``: a reproducible signed data set, imported and indexed, that fills every
research view and carries edits and deletions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import asyncpg

from relay.archive.demo import TEMPLATES, generate
from relay.nostr.event import canonical_bytes
from relay.nostr.verify import verify_signature
from tests.server.test_cli_archive import run

SIZE = {"athletes": 3, "weeks": 4, "seed": 7}
ARGS = ["--athletes", "3", "--weeks", "4", "--seed", "7"]


def test_same_seed_same_events_other_seed_other_events() -> None:
    first, again, other = generate(**SIZE), generate(**SIZE), generate(**{**SIZE, "seed": 8})
    assert [e["id"] for e in first] == [e["id"] for e in again]
    assert not {e["id"] for e in first} & {e["id"] for e in other}
    kinds = {e["kind"] for e in first}
    assert kinds == {33401, 33402, 1301, 5}
    authors = {e["pubkey"] for e in first if e["kind"] == 1301}
    assert len(authors) == SIZE["athletes"]


def test_events_are_signed_and_speak_both_dialects() -> None:
    events = generate(**SIZE)
    for event in events:
        serial = canonical_bytes(
            event["pubkey"], event["created_at"], event["kind"], event["tags"], event["content"]
        )
        assert hashlib.sha256(serial).hexdigest() == event["id"]
        assert verify_signature(event["id"], event["pubkey"], event["sig"])
    records = [e for e in events if e["kind"] == 1301]
    runstr = [e for e in records if ["client", "RUNSTR", "1.2.0"] in e["tags"]]
    powr = [e for e in records if ["client", "POWR"] in e["tags"]]
    assert runstr and powr and len(runstr) + len(powr) == len(records)
    units = {t[2] for e in runstr for t in e["tags"] if t[0] == "distance"}
    assert units == {"km", "mi"}
    library = [e for e in events if e["kind"] == 33401]
    weights = {next(t[1] for t in e["tags"] if t[0] == "format_units") for e in library}
    assert {"kg", "lbs"} <= weights


async def test_demo_imports_indexes_and_fills_every_view(
    db: asyncpg.Connection[Any], db_dsn: str, tmp_path: Path
) -> None:
    done = run(["demo", "--db-dsn", db_dsn, *ARGS], tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    events = generate(**SIZE)
    assert f"accepted: {len(events)}".encode() in done.stdout

    views = [
        r["table_name"]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'fitness'"
        )
    ]
    assert "personal_records" in views
    empty = [v for v in views if not await db.fetchval(f'SELECT count(*) FROM fitness."{v}"')]
    assert empty == []

    # Deletions: each athlete's twin session (by id) and the retired exercise (by address).
    deleted = {t[1] for e in events if e["kind"] == 5 for t in e["tags"] if t[0] == "e"}
    assert len(deleted) == SIZE["athletes"]
    indexed = {r["event_id"] for r in await db.fetch("SELECT event_id FROM fitness.workouts")}
    assert not deleted & indexed
    assert len(indexed) == sum(e["kind"] == 1301 for e in events) - len(deleted)
    exercises = {
        r["d"]: r["event_id"] for r in await db.fetch("SELECT d, event_id FROM fitness.exercises")
    }
    assert "nordic-curl" not in exercises
    missing = await db.fetch("SELECT d FROM fitness.missing_references WHERE kind = 33401")
    assert [r["d"] for r in missing] == ["nordic-curl"]

    # Edits: the newest version of each address is the one indexed.
    newest: dict[tuple[int, str], dict[str, Any]] = {}
    for e in events:
        if e["kind"] in (33401, 33402):
            d = next(t[1] for t in e["tags"] if t[0] == "d")
            if (e["kind"], d) not in newest or e["created_at"] > newest[e["kind"], d]["created_at"]:
                newest[e["kind"], d] = e
    versions = sum(e["kind"] in (33401, 33402) for e in events)
    assert versions > len(newest)  # some addresses were edited
    for (kind, d), e in newest.items():
        if kind == 33401 and d != "nordic-curl":
            assert exercises[d] == e["id"], d
    templates = {
        r["d"]: r["event_id"] for r in await db.fetch("SELECT d, event_id FROM fitness.templates")
    }
    assert set(templates) == set(TEMPLATES)
    assert templates["leg-day"] == newest[33402, "leg-day"]["id"]

    # Progressive overload: each athlete's best squat rises from the first week to the last.
    weekly = await db.fetch(
        "SELECT pubkey, week, max(weight_kg) AS top FROM fitness.strength_sets"
        " WHERE exercise_d = 'barbell-back-squat' AND NOT is_warmup GROUP BY 1, 2 ORDER BY 1, 2"
    )
    by_athlete: dict[str, list[float]] = {}
    for row in weekly:
        by_athlete.setdefault(row["pubkey"], []).append(row["top"])
    assert by_athlete and all(tops[-1] > tops[0] for tops in by_athlete.values() if len(tops) > 1)


def test_demo_output_is_the_generated_file(tmp_path: Path) -> None:
    done = run(["demo", *ARGS, "--output", "demo.jsonl"], tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    lines = (tmp_path / "demo.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e["id"] for e in generate(**SIZE)]
