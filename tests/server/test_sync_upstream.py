"""``fitrelay sync`` between two relays on loopback: negentropy both ways, the checks on
fetched events, and the REQ paging used when the upstream refuses NEG-OPEN."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay.app import Relay
from relay.archive.upstream import sync_upstream
from relay.nostr.event import decode_event
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.nostr.rules import Rules
from relay.storage.postgres import Store
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.server.test_cli_archive import _env, fitrelay
from tests.signer import Keys, dumps, unique_content

KIND = 1301


async def put(store: Store, events: list[dict[str, Any]]) -> None:
    await store.ingest(
        [decode_event(dumps(e).encode()) for e in events], [dumps(e) for e in events]
    )


async def stored_ids(store: Store, flt: dict[str, Any]) -> set[str]:
    rows = await store.query([parse_filter(dict(flt, limit=5_000), Limits())], int(time.time()))
    return {event_id.hex() for event_id, _raw in rows}


async def test_negentropy_both_ways(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    keys = Keys()
    now = int(time.time())
    shared = [keys.sign(KIND, unique_content(), created_at=now - i) for i in range(100)]
    mine = [keys.sign(KIND, unique_content(), created_at=now - 50 - i) for i in range(7)]
    theirs = [keys.sign(KIND, unique_content(), created_at=now - 20 - i) for i in range(11)]
    old = keys.sign(KIND, unique_content(), created_at=now - 30 * 86_400)
    await put(store, shared + mine)
    publisher = await RawClient.open(url_of(upstream))
    for event in [*shared, *theirs, old]:
        assert (await publisher.publish(event))[2] is True
    raw_filter = {"kinds": [KIND], "authors": [keys.pubkey]}
    limits = Limits(created_at_past_seconds=7 * 86_400)
    flt = parse_filter(raw_filter, limits)
    report = await sync_upstream(store, url_of(upstream), flt, raw_filter, "both", limits)
    assert report.method == "negentropy"
    assert (report.have, report.need) == (7, 12)
    assert (report.fetched, report.duplicate, report.sent) == (11, 0, 7)
    assert list(report.rejected.values()) == [1]
    assert next(iter(report.rejected)).startswith("invalid:")
    assert await stored_ids(store, raw_filter) == {e["id"] for e in shared + mine + theirs}
    reader = await RawClient.open(url_of(upstream))
    got = await reader.req("r", dict(raw_filter, limit=500))
    assert {e["id"] for e in got} == {e["id"] for e in shared + mine + theirs + [old]}
    # Nothing is left to do the second time.
    again = await sync_upstream(store, url_of(upstream), flt, raw_filter, "both", limits)
    assert (again.have, again.need, again.sent) == (0, 1, 0)
    await publisher.close()
    await reader.close()


async def test_req_paging_when_upstream_refuses_negentropy(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    config = relay_config(limits={"max_negentropy_sessions": 0, "max_limit": 500})
    upstream: Relay = await start_relay(config, dsn=other_dsn)
    keys = Keys()
    # 1,200 events, four to a second: pages of 500 end inside a second.
    events = [keys.sign(KIND, f"n{i}", created_at=1_700_000_000 + i // 4) for i in range(1_200)]
    await put(store, events[:10])
    publisher = await RawClient.open(url_of(upstream))
    for event in events:
        await publisher.send(["EVENT", event])
    for _ in events:
        await publisher.expect("OK")
    await publisher.close()
    raw_filter = {"authors": [keys.pubkey]}
    limits = Limits()
    flt = parse_filter(raw_filter, limits)
    report = await sync_upstream(store, url_of(upstream), flt, raw_filter, "down", limits)
    assert report.method == "req"
    assert (report.need, report.fetched, report.duplicate) == (1_200, 1_190, 10)
    assert await stored_ids(store, raw_filter) == {e["id"] for e in events}
    assert report.rejected == {}


async def test_the_command(
    start_relay: Callable[..., Any], db_dsn: str, other_dsn: str, tmp_path: Path
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    keys = Keys()
    events = [keys.sign(KIND, unique_content(), created_at=1_700_000_000 + i) for i in range(5)]
    publisher = await RawClient.open(url_of(upstream))
    for event in events:
        assert (await publisher.publish(event))[2] is True
    await publisher.close()
    proc = await asyncio.create_subprocess_exec(
        *fitrelay(),
        "--log-level",
        "WARNING",
        "sync",
        url_of(upstream),
        "--db-dsn",
        db_dsn,
        "--filter",
        dumps({"authors": [keys.pubkey]}),
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == f"{url_of(upstream)}: negentropy"
    assert "need: 5" in lines and "fetched: 5" in lines and "rejected: 0" in lines


async def test_fetched_events_pass_the_write_rules(
    start_relay: Callable[..., Any], store: Store, other_dsn: str
) -> None:
    upstream: Relay = await start_relay(dsn=other_dsn)
    keys = Keys()
    workouts = [keys.sign(KIND, unique_content(), created_at=1_700_000_000 + i) for i in range(3)]
    notes = [keys.sign(1, unique_content(), created_at=1_700_000_000 + i) for i in range(2)]
    publisher = await RawClient.open(url_of(upstream))
    for event in workouts + notes:
        assert (await publisher.publish(event))[2] is True
    await publisher.close()
    raw_filter = {"authors": [keys.pubkey]}
    limits = Limits()
    flt = parse_filter(raw_filter, limits)
    rules = Rules(kinds_deny=frozenset({1}))
    report = await sync_upstream(
        store, url_of(upstream), flt, raw_filter, "down", limits, rules=rules
    )
    assert (report.need, report.fetched) == (5, 3)
    assert report.rejected == {"blocked: kind 1 is not accepted by this relay": 2}
    assert await stored_ids(store, raw_filter) == {e["id"] for e in workouts}
