"""`fitrelay reindex` beside a running indexer: it says what it waits for, takes over between
two of the indexer's batches, and the indexer carries on from the rebuilt tables."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from indexer.follower import Indexer, reindex
from relay.nostr.event import decode_event
from relay.storage.postgres import Store
from tests.indexer.scenario import EVENTS
from tests.indexer.tables import snapshot
from tests.indexer.test_index_process import _cli_env

DEADLINE = 20.0
HOLDER = "fitrelay-test-holder"


async def publish(store: Store, *events: dict[str, Any]) -> None:
    for event in events:
        raw = msgspec.json.encode(event)
        await store.ingest([decode_event(raw)], [raw.decode()])


@contextlib.asynccontextmanager
async def indexer_mid_batch(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A session holding the indexer's lock, as an indexer does while it applies a batch."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": HOLDER})
    try:
        await conn.execute("BEGIN")
        await conn.execute("LOCK TABLE fitness.indexer_state IN EXCLUSIVE MODE")
        yield conn
    finally:
        await conn.close()


async def test_reindex_says_whom_it_waits_for_and_takes_over(
    db_dsn: str, db: asyncpg.Connection[Any], store: Store
) -> None:
    names = list(EVENTS)
    await publish(store, *(EVENTS[n] for n in names[:-1]))
    caught_up = asyncio.Event()
    live = Indexer(db_dsn, batch_size=2)
    follower = asyncio.create_task(live.run(on_caught_up=caught_up.set))
    try:
        async with asyncio.timeout(DEADLINE):
            await caught_up.wait()
        before = await snapshot(db)
        lines: list[str] = []
        waiting = asyncio.Event()

        def say(line: str) -> None:
            lines.append(line)
            waiting.set()

        async with indexer_mid_batch(db_dsn) as holder:
            rebuild = asyncio.create_task(reindex(db_dsn, batch_size=3, say=say))
            async with asyncio.timeout(DEADLINE):
                await waiting.wait()
            assert lines[0].startswith("reindex: waiting for ")
            assert HOLDER in lines[0] and "to finish its batch" in lines[0]
            assert not rebuild.done()
            assert await snapshot(db) == before  # readers see the tables as they were
            await holder.execute("COMMIT")
            async with asyncio.timeout(DEADLINE):
                report = await rebuild
        assert lines[-1] == "reindex: the indexer is paused; rebuilding"
        assert report.head == live.stats.head
        assert await snapshot(db) == before  # the rebuild equals what the indexer built
        # The live indexer continues from the rebuilt state.
        caught_up.clear()
        await publish(store, EVENTS[names[-1]])
        live.wake()
        async with asyncio.timeout(DEADLINE):
            while live.stats.checkpoint < report.head + 1:
                caught_up.clear()
                live.wake()
                await caught_up.wait()
        indexed = await snapshot(db)
        await reindex(db_dsn)
        assert await snapshot(db) == indexed
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_the_command_prints_what_it_waits_for(db_dsn: str, tmp_path: Path) -> None:
    async with indexer_mid_batch(db_dsn) as holder:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "reindex", "--db-dsn", db_dsn,
            cwd=tmp_path, env=_cli_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(DEADLINE):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, "reindex ended without saying what it waits for"
                if line.startswith("reindex: waiting for "):
                    break
        assert HOLDER in line
        await holder.execute("COMMIT")
        async with asyncio.timeout(DEADLINE):
            out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().startswith("reindexed ")
