"""The indexer as operators run it: inside `serve`, as `fitrelay index` (killed and
restarted), and `fitrelay reindex`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.indexer.scenario import ALICE, EVENTS
from tests.indexer.tables import snapshot
from tests.signer import Keys


async def wait_for(conn: asyncpg.Connection[Any], query: str, *args: Any) -> Any:
    """Poll until ``query`` returns a true value (the indexer runs in another task/process)."""
    async with asyncio.timeout(30):
        while True:
            value = await conn.fetchval(query, *args)
            if value:
                return value
            await asyncio.sleep(0.05)


async def test_events_published_over_websocket_reach_the_tables(
    start_relay: Any, db: asyncpg.Connection[Any]
) -> None:
    relay: Relay = await start_relay(relay_config(indexer=True))
    client = await RawClient.open(url_of(relay))
    try:
        for name in ("squat_v1", "plan_v1", "record_1"):
            ok = await client.publish(EVENTS[name])
            assert ok[2] is True, ok
    finally:
        await client.close()
    record = EVENTS["record_1"]["id"]
    await wait_for(db, "SELECT count(*) = 3 FROM fitness.workout_sets WHERE workout_event_id = $1",
                   record)  # fmt: skip
    linked = await db.fetch(
        "SELECT exercise_event_id FROM fitness.workout_sets WHERE exercise_d = 'squat'"
    )
    assert [r["exercise_event_id"] for r in linked] == [EVENTS["squat_v1"]["id"]] * 2
    assert relay.indexer is not None and relay.indexer.stats.events_indexed >= 3


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = "127.0.0.1:0"
    return env


async def _cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, cwd=cwd, env=_cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_killed_index_process_resumes_to_a_clean_reindex(
    db_dsn: str, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    # A backlog large enough that the kill lands while batches are being committed.
    keys = Keys(7)
    lines = [msgspec_line(e) for e in EVENTS.values()]
    squat = f"33401:{ALICE.pubkey}:squat"
    for i in range(1000):
        lines.append(
            msgspec_line(
                keys.sign(
                    1301,
                    "",
                    [["d", f"w{i}"], ["title", "W"], ["type", "strength"],
                     ["start", "1742703570"], ["end", "1742703578"], ["completed", "true"],
                     ["exercise", squat, "", "100", str(i % 12 + 1), "8", "normal"]],
                    created_at=1000 + i,
                )
            )
        )  # fmt: skip
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("".join(lines))
    code, out, err = await _cli("import", "--db-dsn", db_dsn, str(backlog), cwd=tmp_path)
    assert code == 0, err
    (tmp_path / "config.toml").write_text("[indexer]\nbatch_size = 5\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "index", "--db-dsn", db_dsn, cwd=tmp_path, env=_cli_env(),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        head = await db.fetchval("SELECT max(seq) FROM events")
        await wait_for(db, "SELECT last_seq > 0 FROM fitness.indexer_state")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    checkpoint = await db.fetchval("SELECT last_seq FROM fitness.indexer_state")
    assert checkpoint < head, "killed before it finished"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "index", "--db-dsn", db_dsn, cwd=tmp_path, env=_cli_env(),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_for(db, "SELECT last_seq = $1 FROM fitness.indexer_state", head)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    resumed = await snapshot(db)
    assert len(resumed["workouts"]) == 1003
    code, out, err = await _cli("reindex", "--db-dsn", db_dsn, cwd=tmp_path)
    assert code == 0, err
    assert "reindexed" in out
    assert await snapshot(db) == resumed


def msgspec_line(event: dict[str, Any]) -> str:
    import msgspec

    return msgspec.json.encode(event).decode() + "\n"


async def test_export_table_command(db_dsn: str, tmp_path: Path) -> None:
    backlog = tmp_path / "events.jsonl"
    backlog.write_text("".join(msgspec_line(EVENTS[n]) for n in ("run", "record_1", "mail")))
    code, _, err = await _cli("import", "--db-dsn", db_dsn, str(backlog), cwd=tmp_path)
    assert code == 0, err
    code, _, err = await _cli("reindex", "--db-dsn", db_dsn, cwd=tmp_path)
    assert code == 0, err
    code, out, err = await _cli("export-table", "cardio_totals", "--db-dsn", db_dsn, cwd=tmp_path)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split(",")[:3] == ["pubkey", "activity", "workouts"]
    assert [row.split(",")[1:3] for row in rows] == [["running", "1"]]
    assert "exported 1 row" in err
    code, _, err = await _cli("export-table", "events", "--db-dsn", db_dsn, cwd=tmp_path)
    assert code == 2
    assert "workouts" in err  # the error lists the tables that can be exported
