"""The single writer: gathers events from every connection, one transaction per batch.

Publishers await :meth:`Writer.submit`; it resolves after COMMIT, so OK true always means
the event is durable. While one batch commits the next one gathers, so batches grow with load
without any timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from relay.nostr.event import Event
from relay.server.metrics import Metrics
from relay.storage.postgres import IngestStatus, Store

__all__ = ["Writer", "WriterUnavailable"]

log = logging.getLogger(__name__)


# Errors that say the database is away, not that an event is unacceptable to it.
_UNAVAILABLE = (
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
)


class WriterUnavailable(Exception):
    """The batch could not be committed (database unreachable, shutting down)."""


@dataclass(slots=True)
class _Item:
    event: Event
    raw: str
    done: asyncio.Future[IngestStatus]


class Writer:
    """A stage: the one writer of the process."""

    name = "writer"
    grace = 10.0
    """Seconds :meth:`run` is given after :meth:`stop` to commit what was queued."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int,
        queue_size: int,
        on_commit: Callable[[list[tuple[Event, str]]], None] = lambda _stored: None,
        on_write: Callable[[list[Event]], None] = lambda _events: None,
        metrics: Metrics | None = None,
        summary_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.metrics = metrics
        self.on_write = on_write
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(queue_size)
        self._stopping = False
        # An INFO line at most every summary_seconds: batches and events since the last one.
        self._summary_seconds = summary_seconds
        self._summary_at = time.monotonic()
        self._batches = 0
        self._stored = 0

    async def submit(self, event: Event, raw: str) -> IngestStatus:
        """Queue one verified event and wait until its batch is committed.

        Raises:
            WriterUnavailable: when the batch failed; nothing of it was stored.
        """
        done: asyncio.Future[IngestStatus] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(event, raw, done))
        return await done

    def _take_batch(self, first: _Item) -> list[_Item]:
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is None:
                self._stopping = True
                break
            batch.append(item)
        return batch

    async def _commit(self, batch: list[_Item]) -> None:
        started = time.monotonic()
        try:
            try:
                statuses = await self.store.ingest(
                    [item.event for item in batch], [item.raw for item in batch]
                )
            finally:
                # Before any OK, and even when the outcome is unknown (see LogTail.written).
                self.on_write([item.event for item in batch])
        except asyncio.CancelledError:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(WriterUnavailable("relay is shutting down"))
            raise
        except asyncpg.PostgresError as exc:
            if len(batch) > 1 and not isinstance(exc, _UNAVAILABLE):
                # One event the database refuses must not sink its neighbours: retry alone.
                log.warning("writer: batch of %d failed (%s); retrying one by one", len(batch), exc)
                for item in batch:
                    await self._commit([item])
                return
            self._fail(batch, exc)
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        stored = [
            (item.event, item.raw)
            for item, status in zip(batch, statuses, strict=True)
            if status is IngestStatus.STORED
        ]
        if stored:
            # Before any OK goes out: live fan-out learns of the commit first.
            self.on_commit(stored)
        for item, status in zip(batch, statuses, strict=True):
            if not item.done.done():
                item.done.set_result(status)
        self._account(len(batch), len(stored), time.monotonic() - started)

    def _account(self, size: int, stored: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.writer_batch.observe(size)
            self.metrics.writer_commit.observe(seconds)
        self._batches += 1
        self._stored += stored
        now = time.monotonic()
        if now - self._summary_at >= self._summary_seconds:
            log.info(
                "writer: stored %d events in %d batches in the last %.0f s; %d queued",
                self._stored, self._batches, now - self._summary_at, self.queue.qsize(),
            )  # fmt: skip
            self._summary_at, self._batches, self._stored = now, 0, 0

    def _fail(self, batch: list[_Item], exc: BaseException) -> None:
        log.error("writer: batch of %d events failed, none stored: %r", len(batch), exc)
        for item in batch:
            if not item.done.done():
                item.done.set_exception(WriterUnavailable("the database did not commit"))

    async def start(self) -> None:
        """Nothing to set up: the store's pool is open."""

    async def run(self) -> None:
        """Commit batches until :meth:`stop` is called and everything before it is committed."""
        while not self._stopping:
            first = await self.queue.get()
            if first is None:
                return
            await self._commit(self._take_batch(first))

    async def stop(self) -> None:
        """Ask :meth:`run` to return once everything queued so far is committed."""
        await self.queue.put(None)
