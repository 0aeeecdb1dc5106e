"""Freshness and list members, with fitrelay instances on loopback as upstreams: a stale
profile and a stale referenced exercise are replaced by the newer versions upstream while
clients keep being answered from the database; a cycle re-checks at most ``batch``
addresses and an address is not re-checked before its threshold; members of fitness lists
missing here are fetched; an unreachable upstream leaves ``/readyz`` ready."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from relay.app import Relay
from relay.config import Config, FreshnessConfig
from relay.fetchermetrics import fetcher_metrics
from tests.client import RawClient
from tests.conftest import url_of
from tests.server.test_fetcher import (
    _closed_port,
    _exercise,
    _publish,
    _silent_server,
    _until,
    _with_fetcher,
)
from tests.server.test_metrics import http_get
from tests.signer import Keys

PROFILE = "SELECT encode(id, 'hex') FROM events WHERE kind = 0"


def _fresh(config: Config, **freshness: Any) -> Config:
    fresh = msgspec.convert(freshness, FreshnessConfig)
    return msgspec.structs.replace(
        config, fetcher=msgspec.structs.replace(config.fetcher, freshness=fresh)
    )


async def test_a_stale_profile_and_exercise_are_refreshed_without_blocking_clients(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    alice = Keys()
    now = int(time.time())
    old_profile = alice.sign(0, '{"name":"alice"}', created_at=now - 100)
    new_profile = alice.sign(0, '{"name":"alice, lifting"}', created_at=now - 10)
    old_squat = alice.sign(33401, "Squat.", [
        ["d", "squat"], ["title", "Squat"], ["format", "weight", "reps"],
        ["format_units", "kg", "count"], ["equipment", "barbell"],
    ], created_at=now - 100)  # fmt: skip
    new_squat = _exercise(alice, "squat")
    upstream: Relay = await start_relay(dsn=other_dsn)
    await _publish(url_of(upstream), new_profile, new_squat)
    async with _silent_server() as silent:
        # The silent upstream comes first: every re-check waits on it (1 s) before the next.
        config = _with_fetcher(upstreams=[silent, url_of(upstream)], timeout_seconds=1.0)
        config = _fresh(config, profiles_seconds=1.0, events_seconds=1.0,
                        relay_lists_seconds=3600.0, interval_seconds=0.1)  # fmt: skip
        local: Relay = await start_relay(config)
        template = alice.sign(33402, "", [
            ["d", "legs"], ["title", "Legs"],
            ["exercise", f"33401:{alice.pubkey}:squat", "", "100", "5"],
        ])  # fmt: skip
        await _publish(url_of(local), old_profile, old_squat, template)
        linked = "SELECT exercise_event_id FROM fitness.template_sets"
        await _until(db, linked, old_squat["id"])
        # Until a re-check lands, clients get what is stored, at once.
        client = await RawClient.open(url_of(local))
        try:
            started = time.monotonic()
            got = await client.req("p", {"kinds": [0], "authors": [alice.pubkey]})
            assert time.monotonic() - started < 0.5
            assert [e["id"] for e in got] == [old_profile["id"]]
        finally:
            await client.close()
        await _until(db, PROFILE, new_profile["id"])
        await _until(db, linked, new_squat["id"])
        assert local.fetcher is not None
        fetcher = local.fetcher
        rows = {
            r["address"]: r
            for r in await db.fetch("SELECT * FROM fitness.refresh_checks WHERE kind <> 10002")
        }
        profile = rows[f"0:{alice.pubkey}:"]
        assert profile["outcome"] == "updated" and profile["last_upstream"] == url_of(upstream)
        assert rows[f"33401:{alice.pubkey}:squat"]["outcome"] == "updated"
        # Checked once: not again before its threshold (0.9 s at the least), even when a
        # cycle is run right now.
        assert profile["checks"] == 1
        await fetcher.refresh()
        assert (
            await db.fetchval(
                "SELECT checks FROM fitness.refresh_checks WHERE address = $1", profile["address"]
            )
            == 1
        )
        # Her relay list is tracked too: nobody has one, and it is due again in an hour.
        relay_list = await db.fetchrow(
            "SELECT outcome, next_check - last_check AS wait FROM fitness.refresh_checks"
            " WHERE kind = 10002"
        )
        assert relay_list is not None and relay_list["outcome"] == "absent"
        assert relay_list["wait"].total_seconds() > 3000
        stats = fetcher.refresher.stats
        assert stats.checks["updated"] >= 2 and stats.checks["error"] == 0
        assert fetcher.stats.errors[silent] >= 1
        names = {m.name for m in fetcher_metrics(fetcher)}
        assert {"fitrelay_freshness_checks", "fitrelay_freshness_stale_ratio"} <= names


async def test_a_cycle_is_bounded_and_nothing_is_checked_twice_within_its_threshold(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    config = _fresh(_with_fetcher(upstreams=[url_of(upstream)]), author_kinds=[0], batch=3,
                    interval_seconds=3600.0)  # fmt: skip
    local: Relay = await start_relay(config)
    authors = [Keys() for _ in range(5)]
    await _publish(url_of(local), *(_exercise(k, "plank") for k in authors))
    await _until(db, "SELECT count(*) FROM fitness.exercises", 5)
    fetcher = local.fetcher
    assert fetcher is not None
    requests = fetcher.stats.requests["ok"]
    assert await fetcher.refresh() == 3
    stats = fetcher.refresher.stats
    assert (stats.tracked, stats.stale) == (5, 2)
    assert stats.stale_ratio == 0.4
    assert await fetcher.refresh() == 2
    assert await fetcher.refresh() == 0
    assert (stats.tracked, stats.stale) == (5, 0)
    assert stats.checks == {"updated": 0, "unchanged": 0, "absent": 5, "error": 0}
    # One REQ per cycle that had work: the upstream has none of the profiles.
    assert fetcher.stats.requests["ok"] == requests + 2
    rows = await db.fetch("SELECT outcome, checks FROM fitness.refresh_checks")
    assert sorted((r["outcome"], r["checks"]) for r in rows) == [("absent", 1)] * 5


async def test_a_list_member_missing_here_is_fetched(
    other_dsn: str, start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    alice, bob = Keys(), Keys()
    upstream: Relay = await start_relay(dsn=other_dsn)
    row = _exercise(bob, "row")
    await _publish(url_of(upstream), row)
    local: Relay = await start_relay(_with_fetcher(upstreams=[url_of(upstream)]))
    await _publish(url_of(local), _exercise(alice, "press"))
    pack = alice.sign(30004, "Back and shoulders", [
        ["d", "pack"], ["name", "Pack"],
        ["a", f"33401:{alice.pubkey}:press"], ["a", f"33401:{bob.pubkey}:row"],
    ])  # fmt: skip
    await _publish(url_of(local), pack)
    await _until(db, "SELECT count(*) FROM fitness.exercises", 2)
    assert await db.fetchval("SELECT count(*) FROM fitness.missing_references") == 0
    attempt = await db.fetchrow("SELECT address, status, last_upstream FROM fitness.fetch_attempts")
    assert attempt is not None
    assert tuple(attempt) == (f"33401:{bob.pubkey}:row", "found", url_of(upstream))


async def test_unreachable_upstreams_leave_the_relay_ready(
    start_relay: Callable[..., Any], db: asyncpg.Connection[Any]
) -> None:
    alice = Keys()
    async with _silent_server() as silent:
        config = _with_fetcher(upstreams=[_closed_port(), silent], timeout_seconds=0.5)
        config = msgspec.structs.replace(
            config, metrics=msgspec.structs.replace(config.metrics, listen="127.0.0.1:0")
        )
        local: Relay = await start_relay(_fresh(config, interval_seconds=0.1))
        template = alice.sign(33402, "", [
            ["d", "t"], ["title", "T"], ["exercise", f"33401:{alice.pubkey}:gone", "", "1", "1"],
        ])  # fmt: skip
        await _publish(url_of(local), template)
        await _until(db, "SELECT count(*) > 0 FROM fitness.fetch_attempts", True)
        assert local.fetcher is not None and local.fetcher.stats.requests["error"] >= 2
        assert local.monitor is not None
        assert await http_get(local.monitor.port, "/readyz") == (200, "ready\n")
