"""The fetcher with fitrelay instances on loopback as upstreams: a template published here
whose exercises live only upstream (behind a relay hint, an author's NIP-65 list and a
configured upstream) is completed; an address found nowhere is retried, then given up; a
refused and a silent upstream slow neither the other relays' fetches nor local publishing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import msgspec

from relay.app import IndexProcess, Relay
from relay.config import Config, FetcherConfig, IndexerConfig
from relay.fetcher import Fetcher
from relay.fetchermetrics import fetcher_metrics
from tests.client import RawClient
from tests.conftest import cloned_database, relay_config, url_of
from tests.signer import Keys

DEADLINE = 10.0
COMPLETE = """SELECT count(*) FROM fitness.templates t WHERE NOT EXISTS (
    SELECT 1 FROM fitness.incomplete_templates i WHERE (i.pubkey, i.d) = (t.pubkey, t.d))"""


@contextlib.asynccontextmanager
async def _relay(dsn: str) -> AsyncIterator[Relay]:
    """A plain relay on ``dsn``, stopped before the database goes."""
    relay = Relay(relay_config(), dsn)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


def _with_fetcher(**fetcher: Any) -> Config:
    config = relay_config(indexer=True)
    settings = {"enabled": True, "allow_loopback": True, "interval_seconds": 0.1,
                "timeout_seconds": 1.0, "retry_base_seconds": 0.05, **fetcher}  # fmt: skip
    return msgspec.structs.replace(config, fetcher=msgspec.convert(settings, FetcherConfig))


def _exercise(keys: Keys, d: str) -> dict[str, Any]:
    return keys.sign(33401, f"How to {d}.", [
        ["d", d], ["title", d.title()], ["format", "weight", "reps"],
        ["format_units", "kg", "count"], ["equipment", "barbell"],
    ])  # fmt: skip


async def _until(db: asyncpg.Connection[Any], sql: str, want: object) -> float:
    """Seconds until ``sql`` returns ``want`` (fails past the deadline)."""
    start = time.monotonic()
    got: object = None
    while time.monotonic() - start < DEADLINE:
        got = await db.fetchval(sql)
        if got == want:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{sql!r} gave {got!r}, not {want!r}, within {DEADLINE} s")


async def _lists_fetched(fetcher: Fetcher) -> None:
    """Wait for the fetcher's background fetch of relay lists, if one runs."""
    if fetcher.lists_task is not None:
        await asyncio.wait_for(asyncio.shield(fetcher.lists_task), DEADLINE)


async def _publish(url: str, *events: dict[str, Any]) -> None:
    client = await RawClient.open(url)
    try:
        for event in events:
            assert (await client.publish(event))[2] is True
    finally:
        await client.close()


async def test_a_template_is_completed_from_upstream(
    other_dsn: str,
    server_dsn: str,
    template_db: str,
    start_relay: Callable[..., Any],
    db: asyncpg.Connection[Any],
) -> None:
    alice, bob = Keys(), Keys()
    squat, bench, row = _exercise(alice, "squat"), _exercise(alice, "bench"), _exercise(bob, "row")
    hinted: Relay = await start_relay(dsn=other_dsn)
    await _publish(url_of(hinted), squat)
    async with (
        cloned_database(server_dsn, template_db) as listed_dsn,
        cloned_database(server_dsn, template_db) as upstream_dsn,
        _silent_server() as silent,
        _relay(listed_dsn) as listed,
        _relay(upstream_dsn) as upstream,
    ):
        await _publish(url_of(listed), bench)
        await _publish(url_of(upstream), row)
        # The refused and the silent relay come first: they must not hold up the third.
        config = _with_fetcher(
            upstreams=[_closed_port(), silent, url_of(upstream)], timeout_seconds=2.0
        )
        local: Relay = await start_relay(config)
        relay_list = alice.sign(10002, "", [["r", url_of(listed), "write"],
                                            ["r", "ws://127.0.0.1:1", "read"]])  # fmt: skip
        coord = "33401:{}:{}".format
        template = alice.sign(33402, "Pull and push", [
            ["d", "day"], ["title", "Day"], ["type", "strength"],
            ["exercise", coord(alice.pubkey, "squat"), url_of(hinted), "100", "5"],
            ["exercise", coord(alice.pubkey, "bench"), "", "60", "8"],
            ["exercise", coord(bob.pubkey, "row"), "", "50", "10"],
        ])  # fmt: skip
        started = time.monotonic()
        await _publish(url_of(local), relay_list, template)
        published = time.monotonic() - started
        # The hinted and listed relays answer in the first round, before the silent one.
        linked = "SELECT count(*) FROM fitness.template_sets WHERE exercise_event_id IS NOT NULL"
        first = await _until(db, linked, 2)
        # Meanwhile the fetcher waits on the silent upstream (timeout 2 s): publishing here
        # is not held up by it.
        started = time.monotonic()
        await _publish(url_of(local), alice.sign(1, "still fast"))
        assert time.monotonic() - started < 0.3
        assert await db.fetchval(COMPLETE) == 0
        first += time.monotonic() - started
        took = first + await _until(db, COMPLETE, 1)
        print(f"hint and relay list: {first + published:.2f} s; all: {took + published:.2f} s")
        assert first + published < 0.9
        assert await db.fetchval("SELECT count(*) FROM fitness.missing_references") == 0
        assert (
            await db.fetchval(
                "SELECT count(*) FROM fitness.template_sets WHERE exercise_event_id IS NULL"
            )
            == 0
        )
        rows = await db.fetch(
            "SELECT address, status, last_upstream FROM fitness.fetch_attempts ORDER BY d"
        )
        assert {(r["address"].split(":")[2], r["status"], r["last_upstream"]) for r in rows} == {
            ("bench", "found", url_of(listed)),
            ("row", "found", url_of(upstream)),
            ("squat", "found", url_of(hinted)),
        }
        assert local.fetcher is not None
        await _lists_fetched(local.fetcher)
        stats = local.fetcher.stats
        assert stats.outcomes["found"] == 3
        # One more REQ answered: bob's relay list, asked of the upstreams (none has it).
        assert stats.requests["ok"] == 4 and stats.requests["error"] >= 2
        assert stats.relay_lists == 0
        assert set(stats.last_success) == {url_of(hinted), url_of(listed), url_of(upstream)}
        names = {m.name for m in fetcher_metrics(local.fetcher)}
        assert "fitrelay_fetcher_fetches" in names
        assert "fitrelay_fetcher_queue_depth" in names


async def test_a_relay_list_found_upstream_leads_to_the_exercise(
    other_dsn: str,
    server_dsn: str,
    template_db: str,
    start_relay: Callable[..., Any],
    db: asyncpg.Connection[Any],
) -> None:
    """The outbox model with a relay list this database lacks: the configured upstream has
    only alice's kind 10002; the relay it names as her write relay has the exercise."""
    alice = Keys()
    upstream: Relay = await start_relay(dsn=other_dsn)
    async with cloned_database(server_dsn, template_db) as listed_dsn, _relay(listed_dsn) as listed:
        await _publish(url_of(listed), _exercise(alice, "press"))
        relay_list = alice.sign(10002, "", [["r", url_of(listed), "write"]])
        await _publish(url_of(upstream), relay_list)
        local: Relay = await start_relay(_with_fetcher(upstreams=[url_of(upstream)]))
        template = alice.sign(33402, "", [
            ["d", "shoulders"], ["title", "Shoulders"],
            ["exercise", f"33401:{alice.pubkey}:press", "", "40", "8"],
        ])  # fmt: skip
        await _publish(url_of(local), template)
        await _until(db, COMPLETE, 1)
        stored = "SELECT encode(id, 'hex') FROM events WHERE kind = 10002"
        assert await db.fetchval(stored) == relay_list["id"]
        row = await db.fetchrow("SELECT status, last_upstream FROM fitness.fetch_attempts")
        assert row is not None and tuple(row) == ("found", url_of(listed))
        assert local.fetcher is not None and local.fetcher.stats.relay_lists == 1


async def test_an_address_found_nowhere_is_given_up(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    local: Relay = await start_relay(_with_fetcher(upstreams=[url_of(upstream)], max_attempts=3))
    alice = Keys()
    template = alice.sign(33402, "", [
        ["d", "ghost"], ["title", "Ghost"],
        ["exercise", f"33401:{alice.pubkey}:nowhere", "", "1", "1"],
    ])  # fmt: skip
    await _publish(url_of(local), template)
    await _until(db, "SELECT status FROM fitness.fetch_attempts", "given_up")
    row = await db.fetchrow("SELECT * FROM fitness.fetch_attempts")
    assert row is not None
    assert row["attempts"] == 3 and row["reason"] == f"{url_of(upstream)}: not found"
    assert local.fetcher is not None
    await _lists_fetched(local.fetcher)
    stats = local.fetcher.stats
    assert stats.outcomes["not_found"] == 3 and stats.outcomes["given_up"] == 1
    assert stats.requests["ok"] == 4  # three rounds, and alice's relay list asked once
    # Given up means not asked again, and no longer in the queue's depth.
    await asyncio.wait_for(local.fetcher.round(), DEADLINE)
    await _lists_fetched(local.fetcher)
    assert stats.requests["ok"] == 4 and stats.depth == 0
    assert await db.fetchval("SELECT count(*) FROM fitness.missing_references") == 1


async def test_fetched_events_meet_the_write_rules(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    alice, bob = Keys(), Keys()
    upstream: Relay = await start_relay(dsn=other_dsn)
    await _publish(url_of(upstream), _exercise(bob, "row"))
    config = _with_fetcher(upstreams=[url_of(upstream)], max_attempts=1)
    config = msgspec.structs.replace(
        config, policy=msgspec.structs.replace(config.policy, pubkeys_deny=[bob.pubkey])
    )
    local: Relay = await start_relay(config)
    template = alice.sign(33402, "", [
        ["d", "rows"], ["title", "Rows"], ["exercise", f"33401:{bob.pubkey}:row", "", "1", "1"],
    ])  # fmt: skip
    await _publish(url_of(local), template)
    await _until(db, "SELECT status FROM fitness.fetch_attempts", "given_up")
    reason = await db.fetchval("SELECT reason FROM fitness.fetch_attempts")
    assert reason == f"{url_of(upstream)}: blocked: this pubkey may not publish here"
    assert await db.fetchval("SELECT count(*) FROM events WHERE kind = 33401") == 0


async def test_one_fetcher_per_database_and_fitrelay_index_runs_it(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any], db_dsn: str
) -> None:
    alice = Keys()
    upstream: Relay = await start_relay(dsn=other_dsn)
    await _publish(url_of(upstream), _exercise(alice, "deadlift"))
    serving = msgspec.structs.replace(
        _with_fetcher(upstreams=[url_of(upstream)]), indexer=IndexerConfig(enabled=False)
    )
    local: Relay = await start_relay(serving)
    index = IndexProcess(_with_fetcher(upstreams=[url_of(upstream)]), db_dsn)
    await index.start()
    try:
        record = alice.sign(1301, "", [
            ["d", "w1"], ["title", "Pulls"], ["start", "1742703570"], ["end", "1742707170"],
            ["exercise", f"33401:{alice.pubkey}:deadlift", "", "140", "3"],
        ])  # fmt: skip
        await _publish(url_of(local), record)
        linked = "SELECT count(*) FROM fitness.workout_sets WHERE exercise_event_id IS NOT NULL"
        await _until(db, linked, 1)
        fetchers = [f for f in (local.fetcher, index.fetcher) if f is not None]
        assert len(fetchers) == 2
        for fetcher in fetchers:
            await _lists_fetched(fetcher)
        # The exercise and alice's relay list, each asked once, by one of the two.
        assert sum(f.stats.requests["ok"] for f in fetchers) == 2
        assert sum(f.stats.outcomes["found"] for f in fetchers) == 1
    finally:
        await asyncio.wait_for(index.stop(), DEADLINE)


async def test_hints_are_not_followed_when_use_hints_is_off(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    alice = Keys()
    hinted: Relay = await start_relay(dsn=other_dsn)
    await _publish(url_of(hinted), _exercise(alice, "curl"))
    local: Relay = await start_relay(_with_fetcher(use_hints=False, max_attempts=2))
    template = alice.sign(33402, "", [
        ["d", "arms"], ["title", "Arms"],
        ["exercise", f"33401:{alice.pubkey}:curl", url_of(hinted), "10", "12"],
    ])  # fmt: skip
    await _publish(url_of(local), template)
    await _until(db, "SELECT status FROM fitness.fetch_attempts", "given_up")
    assert await db.fetchval("SELECT reason FROM fitness.fetch_attempts") == "no relay to ask"
    assert local.fetcher is not None
    assert local.fetcher.stats.requests == {"ok": 0, "error": 0}
    assert await db.fetchval("SELECT count(*) FROM events WHERE kind = 33401") == 0
