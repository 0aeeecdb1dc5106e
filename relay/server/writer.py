"""The single writer: gathers events from every connection, one transaction per batch.

Publishers await :meth:`Writer.submit`; it resolves after COMMIT, so OK true always means
the event is durable. While one batch commits the next one gathers, so batches grow with load
without any timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from relay.nostr.event import Event
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
    def __init__(
        self,
        store: Store,
        *,
        max_batch: int,
        queue_size: int,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(queue_size)
        self._stopping = False

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
        try:
            statuses = await self.store.ingest(
                [item.event for item in batch], [item.raw for item in batch]
            )
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
        for item, status in zip(batch, statuses, strict=True):
            if not item.done.done():
                item.done.set_result(status)
        if any(status is IngestStatus.STORED for status in statuses):
            self.on_commit()

    def _fail(self, batch: list[_Item], exc: BaseException) -> None:
        log.error("writer: batch of %d events failed, none stored: %r", len(batch), exc)
        for item in batch:
            if not item.done.done():
                item.done.set_exception(WriterUnavailable("the database did not commit"))

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
