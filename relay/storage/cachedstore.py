"""The single-flight query store: cacheable requests answered from a
:class:`~relay.storage.cache.QueryCache`, one shared query per miss."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from relay.nostr.filters import Filter
from relay.storage.cache import NEVER, QueryCache, Slot
from relay.storage.cachekey import CacheKey, Op, Rows, earliest_expiration

__all__ = ["CachedStore", "PagedStore", "QueryStore"]


class QueryStore(Protocol):
    """What a connection asks of the event store (and :class:`CachedStore` provides)."""

    async def query(self, filters: Sequence[Filter], now: int) -> Rows: ...

    async def count(self, filters: Sequence[Filter], now: int) -> int: ...

    async def items(self, flt: Filter, now: int, limit: int) -> list[tuple[int, bytes]]: ...


@runtime_checkable
class PagedStore(QueryStore, Protocol):
    """A :class:`QueryStore` that also hands large answers over a page at a time."""

    def pages(
        self, filters: Sequence[Filter], now: int, page: int
    ) -> AsyncGenerator[Rows, None]: ...


_Flight: TypeAlias = tuple[Slot, "asyncio.Task[tuple[Rows | int, int]]"]


class CachedStore:
    """A :class:`QueryStore` that answers cacheable requests from a :class:`QueryCache`.

    A miss starts one query, shared by every identical request that arrives while it runs and
    while no write has reached its slot (a request after an invalidation always starts its own,
    so a client that got ``OK`` for a write reads it). The shared query runs as its own task: a
    cancelled requester does not cancel it for the others, and its answer is still kept.
    """

    def __init__(self, inner: QueryStore, cache: QueryCache, *, default_limit: int = 500) -> None:
        self.inner = inner
        self.cache = cache
        self.default_limit = default_limit
        """The limit of a filter without one (to bound an answer before running it)."""
        self._paged = inner if isinstance(inner, PagedStore) else None
        """``inner`` when it has pages (checked once: a protocol check is slow)."""
        self._flights: dict[CacheKey, _Flight] = {}

    async def query(self, filters: Sequence[Filter], now: int) -> Rows:
        """Like :meth:`Store.query`."""
        key = self.cache.key(Op.REQ, filters)
        if key is None:
            return await self.inner.query(filters, now)
        value = self.cache.get(key, now)
        if value is not None:
            assert not isinstance(value, int)
            return value
        shared = await self._shared(key, filters, now)
        if shared is not None:
            assert not isinstance(shared, int)
            return list(shared)
        return await self.inner.query(filters, now)

    async def pages(
        self, filters: Sequence[Filter], now: int, page: int
    ) -> AsyncGenerator[Rows, None]:
        """Like :meth:`Store.pages`: a cacheable request whose limits allow an answer the
        cache may keep is one :meth:`query`; any other goes to the store's pages."""
        bound = sum(self.default_limit if f.limit is None else f.limit for f in filters)
        inner = self._paged
        if inner is not None and (
            bound > self.cache.max_result_events or self.cache.key(Op.REQ, filters) is None
        ):
            async for rows in inner.pages(filters, now, page):
                yield rows
            return
        yield await self.query(filters, now)

    async def count(self, filters: Sequence[Filter], now: int) -> int:
        """Like :meth:`Store.count`."""
        key = self.cache.key(Op.COUNT, filters)
        if key is None:
            return await self.inner.count(filters, now)
        value = self.cache.get(key, now)
        if value is not None:
            assert isinstance(value, int)
            return value
        shared = await self._shared(key, filters, now)
        if shared is not None:
            assert isinstance(shared, int)
            return shared
        return await self.inner.count(filters, now)

    async def items(self, flt: Filter, now: int, limit: int) -> list[tuple[int, bytes]]:
        """Like :meth:`Store.items` (not cached: a sync wants the current set)."""
        return await self.inner.items(flt, now, limit)

    async def close(self) -> None:
        """Cancel the shared queries still running (at shutdown)."""
        tasks = [task for _slot, task in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _shared(
        self, key: CacheKey, filters: Sequence[Filter], now: int
    ) -> Rows | int | None:
        """The answer of the query running (or started now) for ``key``, or None when the
        answer it got is not valid at ``now`` (the caller then asks the store itself)."""
        flight = self._flights.get(key)
        if flight is not None and flight[0].alive and flight[0].valid_from <= now:
            self.cache.coalesced += 1
        else:
            slot = self.cache.begin(key, now)
            if key[0] == Op.REQ.value:
                task = asyncio.create_task(self._fill_query(slot, filters, now))
            else:
                task = asyncio.create_task(self._fill_count(slot, filters, now))
            flight = (slot, task)
            self._flights[key] = flight
            task.add_done_callback(functools.partial(self._landed, key, flight))
        value, until = await asyncio.shield(flight[1])
        return value if now < until else None

    def _landed(self, key: CacheKey, flight: _Flight, _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        task = flight[1]
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not logged twice

    async def _fill_query(
        self, slot: Slot, filters: Sequence[Filter], now: int
    ) -> tuple[Rows | int, int]:
        try:
            rows = await self.inner.query(filters, now)
        except BaseException:
            self.cache.abandon(slot)
            raise
        if self.cache.finish_query(slot, rows):
            return rows, self.cache.valid_until(slot)
        return rows, now + 1  # not read for expirations: good for requests of this second

    async def _fill_count(
        self, slot: Slot, filters: Sequence[Filter], now: int
    ) -> tuple[Rows | int, int]:
        try:
            total = await self.inner.count(filters, now)
            if total > self.cache.max_result_events:
                # Too many events to learn when one of them expires: not kept, and good for
                # this second only.
                self.cache.reject(slot)
                return total, now + 1
            expires: int | None = None
            if total:
                # The counted events themselves: every filter's matches are at most ``total``.
                probe = [dataclasses.replace(flt, limit=total) for flt in filters]
                rows = await self.inner.query(probe, now)
                if len(rows) != total:  # another process wrote in between: do not keep
                    self.cache.abandon(slot)
                    return total, now + 1
                expires = earliest_expiration(raw for _id, raw in rows)
        except BaseException:
            self.cache.abandon(slot)
            raise
        self.cache.finish_count(slot, total, expires)
        return total, NEVER if expires is None else expires
