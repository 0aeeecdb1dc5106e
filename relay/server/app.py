"""Wiring: build the relay's parts from a Config, start them in order, stop them in reverse."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve

from relay.config import Config
from relay.server.connection import Connection
from relay.server.live import LiveIndex, LogTail, listen_for_commits
from relay.server.nip11 import make_process_request
from relay.server.writer import Writer
from relay.storage.migrate import migrate
from relay.storage.postgres import Store, create_pool

if TYPE_CHECKING:
    from indexer.follower import Indexer

__all__ = ["Relay"]

log = logging.getLogger(__name__)

# websockets' own frame limit sits above the relay's message limit, so a message a little
# too large gets a NOTICE/OK/CLOSED; one grossly too large closes with 1009 (RFC 6455).
_FRAME_SLACK = 2
_SHUTDOWN_WRITES_SECONDS = 10.0


class Relay:
    """A running relay: the pool, the store, the writer, live fan-out and the listener."""

    def __init__(self, config: Config, dsn: str) -> None:
        self.config = config
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None
        self.index = LiveIndex()
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self.indexer: Indexer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        self.pool = await create_pool(
            self.dsn,
            min_size=cfg.db.pool_min,
            max_size=cfg.db.pool_max,
            statement_timeout_ms=cfg.relay.query_timeout_ms,
        )
        async with self.pool.acquire() as conn:
            await migrate(conn)
        self.store = Store(self.pool, default_limit=cfg.relay.limits.default_limit)
        self.tail = LogTail(self.store, self.index)
        await self.tail.start()
        self.writer = Writer(
            self.store,
            max_batch=cfg.relay.max_batch,
            queue_size=cfg.relay.writer_queue,
            on_commit=self.tail.wake,
        )
        self._spawn(self.writer.run(), "writer")
        self._spawn(self.tail.run(), "live tail")
        self._spawn(listen_for_commits(self.dsn, self.tail.wake), "listener")
        self._spawn(self._sweep_expired(), "expiration sweep")
        if cfg.indexer.enabled:
            from indexer.follower import Indexer

            self.indexer = Indexer(self.dsn, batch_size=cfg.indexer.batch_size)
            self._spawn(self.indexer.run(), "indexer")
        self._server = await serve(
            self._serve_connection,
            cfg.relay.host,
            cfg.relay.port,
            process_request=make_process_request(cfg),
            max_size=cfg.relay.limits.max_message_bytes * _FRAME_SLACK,
            compression="deflate" if cfg.relay.compression else None,
            ping_interval=30,
            ping_timeout=60,
            close_timeout=2,
            server_header="fitrelay",
        )
        log.info("listening on ws://%s:%d", cfg.relay.host, self.port)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s stopped unexpectedly", name)
                raise

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def _serve_connection(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self.config, self.store, self.writer, self.index, next(self._ids))
        self.connections.add(conn)
        log.info("conn %d: open from %s", conn.conn_id, ws.remote_address)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            log.info("conn %d: closed (%s)", conn.conn_id, ws.close_code)

    async def _sweep_expired(self) -> None:
        interval = self.config.relay.expiration_sweep_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                purged = await self.store.purge_expired(int(time.time()))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("expiration sweep failed")
                continue
            if purged:
                log.info("deleted %d expired events", purged)

    async def stop(self) -> None:
        """Stop accepting, close connections, commit what is queued, then release the pool."""
        if self._server is not None:
            self._server.close(close_connections=False)
            # Events already received are committed and answered before the close.
            pending = [task for conn in self.connections for task in conn.writes]
            if pending:
                await asyncio.wait(pending, timeout=_SHUTDOWN_WRITES_SECONDS)
            await asyncio.gather(
                *(conn.ws.close(1001, "relay shutting down") for conn in list(self.connections))
            )
            await self._server.wait_closed()
        writer = [t for t in self._tasks if t.get_name() == "writer"]
        if writer:
            await self.writer.stop()
            await asyncio.wait(writer, timeout=_SHUTDOWN_WRITES_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.pool is not None:
            await self.pool.close()
