"""``fitrelay sync`` interrupted and run again: REQ pages resume from their checkpoint (or
start over with ``restart``), negentropy transfers only what is left, each page or chunk is
stored before the next is asked for, and the command shows a bar only on a terminal."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from relay.app import Relay
from relay.archive.upstream import SyncProgress, SyncReport, canonical_filter, sync_upstream
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.storage.postgres import Store
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.server.test_cli_archive import _env, fitrelay, run_on_a_terminal
from tests.server.test_sync_upstream import put, stored_ids
from tests.signer import Keys, dumps, unique_content

KIND = 1301
BASE = 1_700_000_000
PAGE = 50


class Interrupt(SyncProgress):
    """Records what the sync hands to the store; cancels the sync's task, as Ctrl-C
    cancels ``asyncio.run``'s, once ``after`` batches are stored (never when None)."""

    def __init__(self, after: int | None = None, *, when: str = "stored") -> None:
        self.after = after
        self.when = when
        self.batches: list[int] = []
        self.published_batches: list[int] = []
        self.reached: list[int] = []
        self.rounds = 0

    def reconciling(self, rounds: int) -> None:
        self.rounds = rounds

    def stored(self, batch: int, report: SyncReport, reached: int | None = None) -> None:
        self.batches.append(batch)
        if reached is not None:
            self.reached.append(reached)
        self._maybe_stop("stored", len(self.batches))

    def published(self, batch: int, report: SyncReport) -> None:
        self.published_batches.append(batch)
        self._maybe_stop("published", len(self.published_batches))

    def _maybe_stop(self, when: str, count: int) -> None:
        if when == self.when and count == self.after:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()


async def publish_all(relay: Relay, events: list[dict[str, Any]]) -> None:
    publisher = await RawClient.open(url_of(relay))
    for event in events:
        await publisher.send(["EVENT", event])
    for _ in events:
        ok = await publisher.expect("OK")
        assert ok[2] is True, ok
    await publisher.close()


async def req_upstream(start_relay: Callable[..., Any], dsn: str) -> Relay:
    """A fitrelay that answers NEG-OPEN with NEG-ERR, so it is read by REQ pages."""
    config = relay_config(limits={"max_negentropy_sessions": 0})
    relay: Relay = await start_relay(config, dsn=dsn)
    return relay


async def checkpoint_rows(store: Store) -> list[asyncpg.Record]:
    async with store.pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch("SELECT * FROM sync_checkpoints")
    return rows


async def interrupted(
    store: Store, url: str, raw_filter: dict[str, Any], direction: Any, stop: Interrupt, **kw: Any
) -> None:
    flt = parse_filter(raw_filter, Limits())
    task = asyncio.ensure_future(
        sync_upstream(
            store, url, flt, raw_filter, direction, Limits(), progress=stop, page_size=PAGE, **kw
        )
    )
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(60):
            await task


async def complete(
    store: Store, url: str, raw_filter: dict[str, Any], direction: Any, **kw: Any
) -> tuple[SyncReport, Interrupt]:
    watch = Interrupt()
    flt = parse_filter(raw_filter, Limits())
    async with asyncio.timeout(60):
        report = await sync_upstream(
            store, url, flt, raw_filter, direction, Limits(), progress=watch, page_size=PAGE, **kw
        )
    return report, watch


def four_a_second(keys: Keys, n: int) -> list[dict[str, Any]]:
    """Pages of 50 end inside a second when four events share each."""
    return [keys.sign(KIND, f"n{i}", created_at=BASE + i // 4) for i in range(n)]


async def test_req_sync_resumes_from_its_checkpoint(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream = await req_upstream(start_relay, other_dsn)
    keys = Keys()
    events = four_a_second(keys, 230)
    await publish_all(upstream, events)
    await put(store, events[:10])
    raw_filter = {"authors": [keys.pubkey], "kinds": [KIND]}
    url = url_of(upstream)

    first = Interrupt(after=2)
    await interrupted(store, url, raw_filter, "down", first)
    # Two pages stored: the newest 50, then 50 more from the first page's oldest second,
    # less the ids of that second already stored.
    assert first.batches[0] == PAGE and 0 < first.batches[1] <= PAGE
    got = sum(first.batches)
    # REQ's order: newest first, the lowest id first within a second.
    order = sorted(events, key=lambda e: (-e["created_at"], e["id"]))
    newest = {e["id"] for e in order[:got]}
    assert await stored_ids(store, raw_filter) == {e["id"] for e in events[:10]} | newest
    (row,) = await checkpoint_rows(store)
    assert (row["upstream"], row["direction"], row["phase"]) == (url, "down", "down")
    assert row["filter"] == canonical_filter({"kinds": [KIND], "authors": [keys.pubkey]})
    assert row["pages"] == 2
    assert row["until_at"] == order[got - 1]["created_at"] == first.reached[-1]
    # The boundary: the ids stored at the second reached, and only those.
    assert set(row["boundary_ids"]) == {
        e["id"] for e in order[:got] if e["created_at"] == row["until_at"]
    }

    report, watch = await complete(store, url, raw_filter, "down")
    assert report.method == "req"
    assert report.resumed is not None and report.resumed.startswith(
        f"from until {row['until_at']} "
    )
    assert "after 2 pages" in report.resumed
    assert await stored_ids(store, raw_filter) == {e["id"] for e in events}
    assert (report.need, report.fetched, report.duplicate) == (230, 220, 10)
    assert report.fetched_before == got
    assert sum(watch.batches) == 230 - got  # the second run fetched only the rest
    assert max(watch.batches) <= PAGE and report.largest_batch <= PAGE
    assert watch.reached == sorted(watch.reached, reverse=True)
    assert await checkpoint_rows(store) == []
    text = report.format(url)
    assert f"resumed from until {row['until_at']}" in text
    assert f"fetched: 220 ({220 - got} this run)" in text
    assert re.search(r"^elapsed: \d+\.\d s$", text, re.MULTILINE)


async def test_restart_starts_over(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream = await req_upstream(start_relay, other_dsn)
    keys = Keys()
    events = four_a_second(keys, 120)
    await publish_all(upstream, events)
    raw_filter = {"authors": [keys.pubkey]}
    url = url_of(upstream)
    await interrupted(store, url, raw_filter, "down", Interrupt(after=1))
    assert len(await checkpoint_rows(store)) == 1
    report, watch = await complete(store, url, raw_filter, "down", restart=True)
    assert report.resumed is None
    # From the top again: the first page comes back as duplicates.
    assert (report.need, report.fetched, report.duplicate) == (120, 120 - PAGE, PAGE)
    assert sum(watch.batches) == 120
    assert await stored_ids(store, raw_filter) == {e["id"] for e in events}
    assert await checkpoint_rows(store) == []


async def test_checkpoints_are_per_direction_and_filter(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream = await req_upstream(start_relay, other_dsn)
    keys = Keys()
    events = four_a_second(keys, 120)
    await publish_all(upstream, events)
    url = url_of(upstream)
    await interrupted(store, url, {"authors": [keys.pubkey]}, "down", Interrupt(after=1))
    # Another filter (a kind added) does not resume the first one's checkpoint.
    other, _ = await complete(store, url, {"authors": [keys.pubkey], "kinds": [KIND]}, "down")
    assert other.resumed is None and other.need == 120
    (row,) = await checkpoint_rows(store)
    assert row["filter"] == canonical_filter({"authors": [keys.pubkey]})


async def test_req_upload_resumes_after_the_last_chunk_sent(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream = await req_upstream(start_relay, other_dsn)
    keys = Keys()
    mine = [keys.sign(KIND, unique_content(), created_at=BASE + i) for i in range(30)]
    await put(store, mine)
    raw_filter = {"authors": [keys.pubkey]}
    url = url_of(upstream)
    await interrupted(
        store, url, raw_filter, "up", Interrupt(after=1, when="published"), ids_per_req=10
    )
    (row,) = await checkpoint_rows(store)
    assert row["phase"] == "up"
    assert row["sent_through"] == sorted(e["id"] for e in mine)[9]
    report, watch = await complete(store, url, raw_filter, "up", ids_per_req=10)
    assert report.resumed is not None and report.resumed.startswith("publishing after id")
    assert watch.published_batches == [10, 10]
    assert report.sent == 30
    reader = await RawClient.open(url)
    got = await reader.req("r", dict(raw_filter, limit=100))
    await reader.close()
    assert {e["id"] for e in got} == {e["id"] for e in mine}
    assert await checkpoint_rows(store) == []


async def test_negentropy_rerun_fetches_only_the_rest(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    keys = Keys()
    now = int(time.time())
    events = [keys.sign(KIND, unique_content(), created_at=now - i) for i in range(130)]
    await publish_all(upstream, events)
    raw_filter = {"authors": [keys.pubkey]}
    url = url_of(upstream)
    first = Interrupt(after=1)
    await interrupted(store, url, raw_filter, "down", first, ids_per_req=40)
    assert first.batches == [40] and first.rounds >= 1
    assert len(await stored_ids(store, raw_filter)) == 40
    assert await checkpoint_rows(store) == []  # negentropy keeps no checkpoint
    report, watch = await complete(store, url, raw_filter, "down", ids_per_req=40)
    assert report.method == "negentropy" and report.resumed is None
    assert (report.need, report.fetched, report.duplicate) == (90, 90, 0)
    assert watch.batches == [40, 40, 10]
    assert await stored_ids(store, raw_filter) == {e["id"] for e in events}


async def test_the_command_without_and_with_a_terminal(
    start_relay: Callable[..., Any], store: Store, db_dsn: str, other_dsn: str, tmp_path: Path
) -> None:
    upstream = await req_upstream(start_relay, other_dsn)
    keys = Keys()
    events = four_a_second(keys, 120)
    await publish_all(upstream, events)
    raw_filter = {"authors": [keys.pubkey]}
    url = url_of(upstream)
    await interrupted(store, url, raw_filter, "down", Interrupt(after=1))
    args = ["sync", url, "--db-dsn", db_dsn, "--filter", dumps(raw_filter)]
    proc = await asyncio.create_subprocess_exec(
        *fitrelay(),
        "--log-level",
        "WARNING",
        *args,
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert err == b""  # no bar on a pipe
    lines = out.decode().splitlines()
    assert lines[0] == f"{url}: req"
    assert lines[1].startswith(f"resumed from until {BASE + (119 - 49) // 4} ")
    assert "need: 120" in lines and "fetched: 120 (70 this run)" in lines
    assert re.fullmatch(r"elapsed: \d+\.\d s", lines[-1])
    assert await checkpoint_rows(store) == []

    # On a terminal, with --restart: a bar of the events fetched and the time reached.
    status, out, terminal = await asyncio.to_thread(
        run_on_a_terminal, [*args, "--restart"], tmp_path
    )
    assert status == 0, terminal.decode(errors="replace")
    shown = terminal.decode(errors="replace")
    assert "fetched" in shown and "reached 2023-11-14" in shown and " events" in shown
    summary = out.decode().splitlines()
    assert summary[0] == f"{url}: req" and not summary[1].startswith("resumed")
    assert "duplicate: 120" in summary
