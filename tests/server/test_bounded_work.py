"""Bounded work per connection (issue 12, D1 and D2), at reduced scale on a real socket.

D1: a flood of COUNTs on one connection runs at most ``max_queries_in_flight`` of them and
refuses the rest at once (``CLOSED rate-limited:``), so another client's EVENT and id lookup
are answered promptly; the wait for a pooled connection is bounded apart from the query
timeout. D2: a stored answer larger than ``max_pending_outbound_bytes`` reaches a client
reading at full speed whole, with EOSE, queued a chunk at a time; several at once leave
another client's EVENT its OK.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from relay.app import Relay
from relay.config import Config
from relay.nostr.event import decode_event
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys, dumps

EVENTS = 8_000
WINDOWS = 4
"""The big REQ: one filter per created_at window, each within max_limit."""
BASE = 1_000_000
PENDING = 1024 * 1024
"""max_pending_outbound_bytes in these tests: a quarter of the big answer's size."""


async def _seed(relay: Relay, keys: Keys, count: int, *, size: int = 400) -> list[dict[str, Any]]:
    """Store ``count`` kind-1 events of about ``size`` bytes of content, oldest first."""
    events = [
        keys.sign(1, f"{i:06d}" + "x" * size, [["t", f"tag{i % 50}"]], created_at=BASE + i)
        for i in range(count)
    ]
    for start in range(0, count, 1_000):
        batch = events[start : start + 1_000]
        raws = [dumps(e) for e in batch]
        await relay.store.ingest([decode_event(r.encode()) for r in raws], raws)
    return events


def _big_req(sub_id: str, count: int) -> list[Any]:
    step = count // WINDOWS
    filters = [
        {"kinds": [1], "since": BASE + w * step, "until": BASE + (w + 1) * step - 1, "limit": 5000}
        for w in range(WINDOWS)
    ]
    return ["REQ", sub_id, *filters]


async def _read_answer(client: RawClient, sub_id: str, timeout: float = 30) -> list[str]:
    """The ids of the stored answer, read as fast as they come, up to EOSE."""
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            reply = msgspec.json.decode(await client.ws.recv())
            if reply[0] == "EOSE":
                assert reply[1] == sub_id
                return ids
            assert reply[:2] == ["EVENT", sub_id], reply[:3]
            ids.append(reply[2]["id"])


def _with_db(config: Config, **db: Any) -> Config:
    return msgspec.structs.replace(config, db=msgspec.structs.replace(config.db, **db))


async def _ok_seconds(client: RawClient, event: dict[str, Any]) -> float:
    started = time.monotonic()
    reply = await client.publish(event)
    assert reply[0] == "OK" and reply[2] is True, reply
    return time.monotonic() - started


async def test_a_count_flood_on_one_connection_leaves_others_answered(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(max_pending_outbound_bytes=PENDING))
    keys = Keys(1201)
    stored = await _seed(relay, keys, 5_000, size=50)
    flood, writer, reader = [await RawClient.open(url_of(relay)) for _ in range(3)]
    try:
        heavy = {
            "#t": [f"tag{i}" for i in range(200)],
            "#p": [Keys(1300 + i).pubkey for i in range(50)],
        }
        total = 600
        for i in range(total):
            await flood.send(["COUNT", f"c{i}", heavy, {"kinds": [1], "#t": [f"tag{i % 50}"]}])
        # While the flood is being answered, another client's EVENT commits and an id lookup
        # from a third client is answered.
        assert await _ok_seconds(writer, keys.sign(1, "during the flood")) < 5
        async with asyncio.timeout(5):
            got = await reader.req("ids", {"ids": [stored[7]["id"]]})
        assert [e["id"] for e in got] == [stored[7]["id"]]
        counted = refused = 0
        async with asyncio.timeout(30):
            while counted + refused < total:
                reply = await flood.recv()
                if reply[0] == "COUNT":
                    counted += 1
                    assert reply[2]["count"] >= 100
                else:
                    assert reply[0] == "CLOSED", reply
                    assert reply[2].startswith("rate-limited: too many queries in flight"), reply
                    refused += 1
        limit = relay.config.relay.limits.max_queries_in_flight
        assert counted >= limit and refused > 0
        assert relay.store.waiting == 0
        # Once answered, the connection may count again.
        await flood.send(["COUNT", "after", {"kinds": [1]}])
        assert await flood.expect("COUNT") == ["COUNT", "after", {"count": 5_001}]
    finally:
        for client in (flood, writer, reader):
            await client.close()


async def test_the_pool_wait_is_bounded_apart_from_the_query_timeout(start_relay: Any) -> None:
    config = relay_config(query_timeout_ms=400)
    relay: Relay = await start_relay(_with_db(config, pool_min=1, pool_max=1, pool_wait_ms=300))
    client = await RawClient.open(url_of(relay))
    try:
        note = Keys(1202).sign(1, "stored")
        assert (await client.publish(note))[2] is True
        pool = relay.pool
        assert pool is not None
        held = await pool.acquire()  # the only query connection
        try:
            started = time.monotonic()
            await client.send(["REQ", "busy", {"kinds": [1]}])
            assert await client.expect("CLOSED") == [
                "CLOSED",
                "busy",
                "error: relay busy, try again",
            ]
            await client.send(["COUNT", "busy-count", {"kinds": [1]}])
            assert await client.expect("CLOSED") == [
                "CLOSED",
                "busy-count",
                "error: relay busy, try again",
            ]
            assert time.monotonic() - started < 3
            # A query that waits less than pool_wait_ms is answered, however long it waited
            # compared with the query timeout: the timeout counts only once it runs.
            await client.send(["REQ", "late", {"kinds": [1]}])
            await asyncio.sleep(0.25)  # the REQ waits for the held connection meanwhile
        finally:
            await pool.release(held)
        reply = await client.recv()
        assert reply == ["EVENT", "late", note], reply
        assert await client.recv() == ["EOSE", "late"]
        registry = relay.metrics.registry
        assert registry.get_sample_value("fitrelay_queries_busy_total") == 2
        assert registry.get_sample_value("fitrelay_queries_cancelled_total") == 0
    finally:
        await client.close()


@pytest.mark.parametrize("event_cache", [True, False], ids=["event-cache", "no-event-cache"])
async def test_a_big_answer_read_at_full_speed_arrives_whole(
    start_relay: Any, event_cache: bool
) -> None:
    """D2: the answer (about 4 MB) is four times max_pending_outbound_bytes; before, the
    client was dropped with 1008 having received nothing."""
    relay: Relay = await start_relay(
        relay_config(
            max_pending_outbound_bytes=PENDING,
            event_cache_bytes=268_435_456 if event_cache else 0,
        )
    )
    events = await _seed(relay, Keys(1203), EVENTS)
    client = await RawClient.open(url_of(relay))
    try:
        await client.send(_big_req("big", EVENTS))
        ids = await _read_answer(client, "big")
        assert ids == [e["id"] for e in reversed(events)]
        (conn,) = relay.connections
        # What was ever left unsent at once: a few chunks, not the answer.
        assert 0 < conn.peak_answer_unsent <= PENDING
        assert conn.session.queries == 0
        # The connection is still usable.
        assert await client.req("small", {"ids": [events[0]["id"]]}) == [events[0]]
    finally:
        await client.close()
    assert relay.metrics.registry.get_sample_value("fitrelay_slow_client_disconnects_total") == 0


async def test_several_big_answers_at_once_leave_an_event_its_ok(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(max_pending_outbound_bytes=PENDING))
    keys = Keys(1204)
    events = await _seed(relay, keys, EVENTS)
    readers = [await RawClient.open(url_of(relay)) for _ in range(4)]
    writer = await RawClient.open(url_of(relay))
    try:
        for i, reader in enumerate(readers):
            await reader.send(_big_req(f"big{i}", EVENTS + 4))
        answers = [
            asyncio.create_task(_read_answer(reader, f"big{i}")) for i, reader in enumerate(readers)
        ]
        # A matching event committed while the answers stream reaches each reader once:
        # in its stored answer or live after EOSE.
        late = keys.sign(1, "while streaming", created_at=BASE + EVENTS)
        assert await _ok_seconds(writer, late) < 3
        expected = [e["id"] for e in reversed(events)]
        for i, (reader, answer) in enumerate(zip(readers, answers, strict=True)):
            ids = await answer
            if ids and ids[0] == late["id"]:
                ids = ids[1:]
            else:
                live = await reader.recv()
                assert live == ["EVENT", f"big{i}", late], live[:2]
            assert ids == expected
        for reader in readers:
            await reader.send(["CLOSE", "x"])
        assert all(conn.peak_answer_unsent <= PENDING for conn in relay.connections)
    finally:
        for client in (*readers, writer):
            await client.close()
