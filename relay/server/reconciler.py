"""The asyncio side of NIP-77 for one connection: loading the items a NEG-OPEN reconciles.

The session (:mod:`relay.nostr.reconciliation`) asks for the ``(created_at, id)`` set of a
filter with a :class:`~relay.nostr.reconciliation.LoadItems` outcome; this loads it under the
connection's share of the pool and the query timeout, hands it back to the session and
sends the first answer, and closes sessions left idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import asyncpg

from relay.nostr.errors import NostrError
from relay.nostr.reconciliation import LoadItems
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.postgres import PoolBusy

if TYPE_CHECKING:
    from relay.server.connection import Connection

__all__ = ["NegentropyLoads"]

log = logging.getLogger(__name__)

_ITEMS_SLOW = NostrError("blocked", "the negentropy query took too long; narrow the filter")
_ITEMS_FAILED = NostrError("error", "could not run the negentropy query")
_ITEMS_BUSY = NostrError("error", "relay busy, try again")


class NegentropyLoads:
    """The item loads of one connection's NEG-OPENs, cancelled when it closes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, load: LoadItems) -> None:
        task = asyncio.create_task(self._load(load))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def _load(self, load: LoadItems) -> None:
        """Load the items of a NEG-OPEN and answer its first message."""
        conn = self.conn
        await conn.own_writes()
        try:
            async with conn.db_turns:
                rows = await conn.store.items(load.filter, int(time.time()), load.limit)
        except PoolBusy:
            conn.metrics.queries_busy.inc()
            self._fail(load, _ITEMS_BUSY)
            return
        except (TimeoutError, asyncpg.QueryCanceledError):
            conn.metrics.queries_cancelled.inc()
            self._fail(load, _ITEMS_SLOW)
            return
        except DATABASE_ERRORS:
            log.exception("conn %d: negentropy query failed", conn.conn_id)
            self._fail(load, _ITEMS_FAILED)
            return
        answer = conn.session.negentropy.loaded(load.sub_id, load.token, rows, int(time.time()))
        if answer is not None:
            conn.reply(answer)
            self.expire_later()

    def _fail(self, load: LoadItems, error: NostrError) -> None:
        failed = self.conn.session.negentropy.failed(load.sub_id, load.token, error)
        if failed is not None:
            self.conn.reply(failed)

    def expire_later(self) -> None:
        idle = self.conn.config.relay.limits.negentropy_idle_seconds
        if idle:
            self.conn.loop.call_later(idle + 0.5, self._expire)

    def _expire(self) -> None:
        for reply in self.conn.session.negentropy.expire(int(time.time())):
            self.conn.reply(reply)
