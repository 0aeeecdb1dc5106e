"""The query cache inside running relays: repeated reads are served from memory, and a write
(on this relay or another process on the same database) is never hidden by a cached answer.

The relays here run without the in-memory mirror, which answers before the cache does; the
cache keeps what the mirror declines (COUNT, search, older events)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from relay.app import Relay
from relay.nostr.event import decode_event
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.server.live import LiveIndex, LogTail
from relay.storage.cache import QueryCache
from relay.storage.postgres import IngestStatus, Store, create_pool
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

LIBRARY = {"kinds": [33401], "authors": [Keys(11).pubkey]}


def _exercise(title: str, at: int) -> dict[str, Any]:
    return Keys(11).sign(33401, "", [["d", "squat"], ["title", title]], created_at=at)


async def test_library_reads_hit_and_writes_invalidate(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(mirror_events=0))
    assert relay.cache is not None
    client = await RawClient.open(url_of(relay))
    try:
        v1, v2 = _exercise("Squat", 100), _exercise("Back squat", 200)
        assert (await client.publish(v1))[2] is True
        for _ in range(3):
            assert [e["id"] for e in await client.req("lib", LIBRARY)] == [v1["id"]]
        assert (relay.cache.misses, relay.cache.hits) == (1, 2)
        assert (await client.publish(v2))[2] is True
        assert [e["id"] for e in await client.req("lib", LIBRARY)] == [v2["id"]]
        deletion = Keys(11).sign(5, "", [["a", f"33401:{Keys(11).pubkey}:squat"]], created_at=300)
        assert (await client.publish(deletion))[2] is True
        assert await client.req("lib", LIBRARY) == []
        await client.send(["COUNT", "n", LIBRARY])
        assert (await client.expect("COUNT"))[2] == {"count": 0}
    finally:
        await client.close()


async def test_a_write_through_another_relay_reaches_the_cache(start_relay: Any) -> None:
    reader_relay: Relay = await start_relay(relay_config(mirror_events=0))
    writer_relay: Relay = await start_relay(relay_config(mirror_events=0))
    reader = await RawClient.open(url_of(reader_relay))
    writer = await RawClient.open(url_of(writer_relay))
    try:
        v1, v2 = _exercise("Squat", 100), _exercise("Back squat", 200)
        assert (await writer.publish(v1))[2] is True
        # Let the reading relay read v1 from the log first (it invalidates on remote writes).
        head = await reader_relay.store.head_seq()
        async with asyncio.timeout(10):
            while reader_relay.tail.position < head:
                await asyncio.sleep(0.01)
        watcher = await RawClient.open(url_of(reader_relay))
        try:
            assert await watcher.req("watch", LIBRARY) == [v1]
            assert [e["id"] for e in await reader.req("a", LIBRARY)] == [v1["id"]]
            assert [e["id"] for e in await reader.req("b", LIBRARY)] == [v1["id"]]
            cache = reader_relay.cache
            assert cache is not None and (cache.misses, cache.hits) == (1, 2)  # watch, a, b
            assert (await writer.publish(v2))[2] is True
            # Once the reading relay has seen v2 in the log (its live subscriber gets it),
            # no answer of its cache may still hold v1.
            assert (await watcher.expect("EVENT"))[2]["id"] == v2["id"]
            assert [e["id"] for e in await reader.req("c", LIBRARY)] == [v2["id"]]
        finally:
            await watcher.close()
    finally:
        await reader.close()
        await writer.close()


async def _caught_up(relay: Relay) -> None:
    """Wait until ``relay``'s log tail has read everything committed so far."""
    head = await relay.store.head_seq()
    async with asyncio.timeout(10):
        while relay.tail.position < head:
            await asyncio.sleep(0.01)


async def test_a_remote_write_reaches_the_cache_with_nobody_subscribed(start_relay: Any) -> None:
    """With no live subscription the tail reads only positions and authors from the log, and
    that is still enough to drop the answers a write from elsewhere makes stale."""
    reader_relay: Relay = await start_relay(relay_config(mirror_events=0))
    writer_relay: Relay = await start_relay(relay_config(mirror_events=0))
    reader = await RawClient.open(url_of(reader_relay))
    writer = await RawClient.open(url_of(writer_relay))
    try:
        v1 = _exercise("Squat", 100)
        # Another exercise, not a new version: no removal is logged that could invalidate.
        v2 = Keys(11).sign(33401, "", [["d", "lunge"], ["title", "Lunge"]], created_at=200)
        assert (await writer.publish(v1))[2] is True
        await _caught_up(reader_relay)  # v1's own invalidation is behind us
        assert [e["id"] for e in await reader.req("a", LIBRARY)] == [v1["id"]]
        assert [e["id"] for e in await reader.req("b", LIBRARY)] == [v1["id"]]
        cache = reader_relay.cache
        assert cache is not None and cache.hits >= 1
        await reader.send(["CLOSE", "a"])
        await reader.send(["CLOSE", "b"])
        async with asyncio.timeout(10):
            while len(reader_relay.live):
                await asyncio.sleep(0.01)
        assert (await writer.publish(v2))[2] is True
        await _caught_up(reader_relay)
        assert [e["id"] for e in await reader.req("c", LIBRARY)] == [v2["id"], v1["id"]]
    finally:
        await reader.close()
        await writer.close()


class _Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, int | None]] = []

    def deliver(self, sub_id: str, event_id: str, data: bytes, seq: int | None) -> bool:
        self.got.append((event_id, seq))
        return True


async def test_a_subscription_during_a_light_read_still_gets_the_events(db_dsn: str) -> None:
    """The tail reads positions only while nobody is subscribed; if a subscription opens
    while that read is under way, the same stretch of the log is read again with events."""
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        store = Store(pool, default_limit=100)
        index = LiveIndex()
        tail = LogTail(store, index)
        await tail.start()
        note = Keys(12).sign(1, "hello", created_at=50)
        raw = msgspec.json.encode(note)
        assert await store.ingest([decode_event(raw)], [raw.decode()]) == [IngestStatus.STORED]
        inbox = _Inbox()
        light = store.tail_keys

        async def subscribe_meanwhile(after: int, limit: int) -> list[Any]:
            rows = await light(after, limit)
            index.add(inbox, "s", (parse_filter({"authors": [note["pubkey"]]}, Limits()),))
            return rows

        store.tail_keys = subscribe_meanwhile  # type: ignore[method-assign]
        await tail.catch_up()
        assert [event_id for event_id, _seq in inbox.got] == [note["id"]]
        assert tail.position == await store.head_seq()
    finally:
        await pool.close()


async def test_local_writes_the_log_never_shows_are_forgotten(db_dsn: str) -> None:
    """The tail remembers this process's commits until it reads them back from the log. A
    version replaced before the tail got to it is never read back: after a full read it must
    be forgotten too, or the set grows for as long as the process runs."""
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    try:
        store = Store(pool, default_limit=100)
        tail = LogTail(store, LiveIndex(), cache=QueryCache())
        await tail.start()
        keys = Keys(14)
        ids = []
        for created_at in (10, 20):
            raw = msgspec.json.encode(keys.sign(0, f"profile {created_at}", created_at=created_at))
            event = decode_event(raw)
            assert await store.ingest([event], [raw.decode()]) == [IngestStatus.STORED]
            tail.committed([(event, raw.decode())])
            ids.append(event.id)
        assert tail.undispatched_local(ids) == set(ids)
        await tail.catch_up()  # reads the second version; the first was replaced before
        assert tail.undispatched_local(ids) == set()
    finally:
        await pool.close()
