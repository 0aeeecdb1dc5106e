"""Store.pages: a large answer in pages equals the one-shot answer; the wait for a pooled
connection and the query timeout are bounded apart."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.nostr.event import decode_event
from relay.nostr.filters import Filter
from relay.storage.eventcache import EventCache
from relay.storage.postgres import PoolBusy, Store, create_pool
from tests.signer import Keys, dumps

NOW = 2_000_000_000


async def _fill(store: Store, count: int) -> list[str]:
    keys = Keys(77)
    events = [keys.sign(1, f"n{i}", created_at=1_000 + i // 3) for i in range(count)]
    raws = [dumps(e) for e in events]
    await store.ingest([decode_event(r.encode()) for r in raws], raws)
    return raws


@pytest.mark.parametrize("cached", [False, True], ids=["no-event-cache", "event-cache"])
async def test_pages_give_the_answer_of_query_in_order(db_dsn: str, cached: bool) -> None:
    pool = await create_pool(db_dsn)
    try:
        events = EventCache(1 << 24) if cached else None
        store = Store(pool, default_limit=100, events=events)
        await _fill(store, 230)
        filters = [Filter(kinds=frozenset({1}), limit=150), Filter(until=1_040, limit=200)]
        whole = await store.query(filters, NOW)
        pages = [page async for page in store.pages(filters, NOW, 40)]
        assert [len(p) for p in pages[:-1]] == [40] * (len(pages) - 1)
        assert [row for page in pages for row in page] == whole
        # Within one page's bound, one query (one page).
        small = [page async for page in store.pages(filters[:1], NOW, 150)]
        assert small == [await store.query(filters[:1], NOW)]
    finally:
        await pool.close()


async def test_an_event_removed_between_pages_is_left_out(db_dsn: str) -> None:
    pool = await create_pool(db_dsn)
    try:
        store = Store(pool, default_limit=100)
        await _fill(store, 90)
        filters = [Filter(kinds=frozenset({1}), limit=90)]
        whole = await store.query(filters, NOW)
        pages = store.pages(filters, NOW, 30)
        first = await anext(pages)
        gone = whole[60][0]
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM events WHERE id = $1", gone)
        rest = [row for page in [page async for page in pages] for row in page]
        assert first + rest == [row for row in whole if row[0] != gone]
    finally:
        await pool.close()


async def test_the_pool_wait_raises_pool_busy_and_the_timeout_starts_after(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        store = Store(pool, default_limit=10, pool_wait=0.6, query_timeout=0.2)
        held = await pool.acquire()
        with pytest.raises(PoolBusy):
            await store.count([Filter()], NOW)
        # Released after 0.3 s: longer than the query timeout, shorter than the pool wait; the
        # count then runs under its own 0.2 s.
        asyncio.get_running_loop().call_later(
            0.3, lambda: asyncio.ensure_future(pool.release(held))
        )
        assert await store.count([Filter()], NOW) == 0
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await _count_other(db_dsn)
            assert time.monotonic() - started < 2  # the query's 0.2 s, not a longer wait
            await conn.execute("ROLLBACK")
    finally:
        await pool.close()


async def _count_other(db_dsn: str) -> None:
    """A count on a second pool of one connection, while the table is locked."""
    other = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        await Store(other, default_limit=10, pool_wait=1, query_timeout=0.2).count([Filter()], NOW)
    finally:
        await other.close()
