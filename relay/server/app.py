"""Wiring: build the relay's parts from a Config, start them in order, stop them in reverse."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client.core import Metric
from websockets.asyncio.server import Server, ServerConnection, serve

from relay.config import Config
from relay.server.connection import Connection
from relay.server.live import LiveIndex, LogTail, listen_for_commits
from relay.server.metrics import Metrics, gauge
from relay.server.monitor import MonitorServer
from relay.server.nip11 import make_process_request
from relay.server.writer import Writer
from relay.storage.cache import CachedStore, QueryCache, QueryStore
from relay.storage.eventcache import EventCache
from relay.storage.migrate import applied_migrations, available_migrations, migrate
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
        self.metrics = Metrics()
        self.index = LiveIndex(self.metrics.count_live)
        self.monitor: MonitorServer | None = None
        self._stopping = False
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self.indexer: Indexer | None = None
        self._unwatch_gc: Callable[[], None] = lambda: None

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
        self.store = Store(
            self.pool,
            default_limit=cfg.relay.limits.default_limit,
            events=EventCache(cfg.relay.event_cache_bytes) if cfg.relay.event_cache_bytes else None,
        )
        cache_cfg = cfg.relay.cache
        self.cache = (
            QueryCache(
                max_bytes=cache_cfg.max_bytes,
                max_entries=cache_cfg.max_entries,
                max_result_events=cache_cfg.max_result_events,
                max_age=cache_cfg.max_age_seconds,
            )
            if cache_cfg.enabled
            else None
        )
        self.queries: QueryStore = (
            CachedStore(self.store, self.cache) if self.cache is not None else self.store
        )
        self.tail = LogTail(self.store, self.index, cache=self.cache)
        await self.tail.start()
        self.writer = Writer(
            self.store,
            max_batch=cfg.relay.max_batch,
            queue_size=cfg.relay.writer_queue,
            on_commit=self.tail.committed,
            metrics=self.metrics,
            cache=self.cache,
        )
        self._spawn(self.writer.run(), "writer")
        self._spawn(self.tail.run(), "live tail")
        self._spawn(
            listen_for_commits(self.dsn, self.tail.wake, on_payload=self.tail.notified),
            "listener",
        )
        self._spawn(self._sweep_expired(), "expiration sweep")
        if cfg.indexer.enabled:
            from indexer.follower import Indexer

            self.indexer = Indexer(self.dsn, batch_size=cfg.indexer.batch_size)
            self._spawn(self.indexer.run(), "indexer")
        self._watch()
        if cfg.metrics.listen:
            self.monitor = MonitorServer(self.metrics, self.readiness, cfg.metrics.listen)
            await self.monitor.start()
        self._server = await serve(
            self._serve_connection,
            cfg.relay.host,
            cfg.relay.port,
            ssl=tls_context(cfg.relay.tls_cert, cfg.relay.tls_key),
            reuse_port=cfg.relay.workers > 1,
            process_request=make_process_request(cfg),
            max_size=cfg.relay.limits.max_message_bytes * _FRAME_SLACK,
            compression="deflate" if cfg.relay.compression else None,
            ping_interval=30,
            ping_timeout=60,
            close_timeout=2,
            server_header="fitrelay",
        )
        scheme = "wss" if cfg.relay.tls_cert else "ws"
        log.info("listening on %s://%s:%d", scheme, cfg.relay.host, self.port)

    def _watch(self) -> None:
        """Metrics read when scraped: pool, queue, subscriptions, the indexer."""
        assert self.pool is not None
        self.metrics.watch_pool(self.pool, lambda: self.store.waiting)

        def now() -> list[Metric]:
            return [
                gauge("fitrelay_writer_queue_events", "Events waiting for the writer",
                      self.writer.queue.qsize()),
                gauge("fitrelay_subscriptions", "Open subscriptions (all connections)",
                      len(self.index)),
                gauge("fitrelay_connections", "Open WebSocket connections",
                      len(self.connections)),
            ]  # fmt: skip

        self.metrics.add_callback(now)
        self.metrics.watch_indexer(lambda: self.indexer.stats if self.indexer else None)
        self.metrics.watch_cache(lambda: self.cache)
        if self.store.events is not None:
            self.metrics.watch_event_cache(self.store.events)
        self._unwatch_gc = self.metrics.watch_gc()

    async def readiness(self) -> list[str]:
        """Why this relay cannot serve now (empty when it can)."""
        return await database_problems(
            self.pool,
            indexer_lag=self.indexer.stats.lag_seconds if self.indexer else None,
            max_lag=self.config.metrics.ready_max_indexer_lag_seconds,
        )

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
        conn = Connection(
            ws,
            self.config,
            self.queries,
            self.writer,
            self.index,
            next(self._ids),
            self.metrics,
            self.tail,
        )
        self.connections.add(conn)
        self.metrics.connections_opened.inc()
        log.info("conn %d: open from %s", conn.conn_id, ws.remote_address)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            reason = conn.close_reason or _close_reason(ws.close_code, self._stopping)
            self.metrics.connections_closed.labels(reason).inc()
            log.info("conn %d: closed (%s, code %s)", conn.conn_id, reason, ws.close_code)

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
        self._stopping = True
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
        if isinstance(self.queries, CachedStore):
            await self.queries.close()
        if self.monitor is not None:
            await self.monitor.stop()
        self._tasks.clear()
        self._unwatch_gc()
        if self.pool is not None:
            await self.pool.close()


def _close_reason(code: int | None, stopping: bool) -> str:
    if stopping:
        return "shutdown"
    if code in (1002, 1007, 1009):
        return "protocol_error"
    if code == 1011:
        return "server_error"
    return "client"


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server TLS context for wss://, or None when no certificate is configured."""
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def database_problems(
    pool: asyncpg.Pool | None, *, indexer_lag: float | None, max_lag: float
) -> list[str]:
    """Readiness: the database answers within 2 s, every migration is applied, and the
    indexer (when this process runs one) is not further behind than ``max_lag``."""
    if pool is None:
        return ["database: not connected yet"]
    try:
        async with asyncio.timeout(2):
            async with pool.acquire() as conn:
                applied = set(await applied_migrations(conn))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return [f"database: {type(exc).__name__}: {exc}".rstrip(": ")]
    problems = []
    missing = [name for name, _ in available_migrations() if name not in applied]
    if missing:
        problems.append(f"migrations not applied: {', '.join(missing)}")
    if indexer_lag is not None and indexer_lag > max_lag:
        problems.append(f"indexer: {indexer_lag:.0f} s behind the log (limit {max_lag:.0f} s)")
    return problems
