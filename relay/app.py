"""The composition root: the one module that builds processes from the relay's and the
indexer's stages, and the only one that imports both.

``fitrelay serve`` is, in start order: the commit listener, the live tail, the writer, the
expiration sweep, the indexer (unless ``indexer.enabled = false``), the monitor (``/metrics``,
``/healthz``, ``/readyz``) and the WebSocket server; they stop in the reverse order, so the
server stops taking EVENTs before the writer commits what it holds, and the pool closes last.
``fitrelay index`` is the commit listener, the indexer and the monitor. A new capability (a
fetcher, a sync) is one more entry in a list here, and policy hooks are built here once and
handed to the session and the writer's front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
from prometheus_client.core import Metric

from indexer.follower import Indexer
from indexer.metrics import register_metrics
from relay.config import Config
from relay.nostr.policy import DEFAULT_POLICIES, Policies
from relay.scrape import gauge
from relay.server.connection import Connection
from relay.server.live import LiveIndex, LogTail
from relay.server.metrics import Metrics
from relay.server.monitor import MonitorServer, database_problems
from relay.server.sweep import ExpirationSweep
from relay.server.websocket import WebSocketServer
from relay.server.writer import Writer
from relay.stages import Stage, Stages
from relay.storage.cache import QueryCache
from relay.storage.cachedstore import CachedStore, QueryStore
from relay.storage.eventcache import EventCache
from relay.storage.migrate import migrate
from relay.storage.notify import CommitListener
from relay.storage.postgres import Store, create_pool

__all__ = ["IndexProcess", "Relay", "policies_from"]

log = logging.getLogger(__name__)


def policies_from(config: Config) -> Policies:
    """The policy hooks the configuration asks for."""
    del config  # every relay applies the defaults; configured rules join them here
    return DEFAULT_POLICIES


class Relay:
    """A serving process (``fitrelay serve``): the pool, then the stages."""

    def __init__(self, config: Config, dsn: str, policies: Policies | None = None) -> None:
        self.config = config
        self.dsn = dsn
        self.policies = policies if policies is not None else policies_from(config)
        self.metrics = Metrics()
        self.live = LiveIndex(self.metrics.count_live)
        self.pool: asyncpg.Pool | None = None
        """REQ and COUNT, under relay.query_timeout_ms."""
        self.write_pool: asyncpg.Pool | None = None
        """The writer, the live tail and the sweep, under db.write_timeout_ms."""
        self.indexer: Indexer | None = None
        self.monitor: MonitorServer | None = None
        self.stages = Stages([])
        self._unwatch_gc: Callable[[], None] = lambda: None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def connections(self) -> set[Connection]:
        return self.server.connections

    async def start(self) -> None:
        cfg = self.config
        # Migrations run on a connection of their own, with no statement timeout: a slow
        # migration must not be cut short by the limit on client queries.
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        try:
            self.write_pool = await create_pool(
                self.dsn,
                min_size=1,
                max_size=cfg.db.write_pool_max,
                statement_timeout_ms=cfg.db.write_timeout_ms,
            )
            self.pool = await create_pool(
                self.dsn,
                min_size=cfg.db.pool_min,
                max_size=cfg.db.pool_max,
                statement_timeout_ms=cfg.relay.query_timeout_ms,
            )
            self.stages = Stages(self._build(self.pool, self.write_pool))
            self._watch()
            await self.stages.start()
        except BaseException:
            await self._release()
            raise

    def _build(self, pool: asyncpg.Pool, write_pool: asyncpg.Pool) -> list[Stage]:
        cfg = self.config
        self.store = Store(
            pool,
            write_pool=write_pool,
            default_limit=cfg.relay.limits.default_limit,
            pool_wait=cfg.db.pool_wait_ms / 1000,
            query_timeout=cfg.relay.query_timeout_ms / 1000,
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
            CachedStore(self.store, self.cache, default_limit=cfg.relay.limits.default_limit)
            if self.cache is not None
            else self.store
        )
        self.listener = listener = CommitListener(self.dsn)
        self.tail = LogTail(self.store, self.live, cache=self.cache)
        listener.subscribe(self.tail.notified)
        self.writer = Writer(
            self.store,
            max_batch=cfg.relay.max_batch,
            queue_size=cfg.relay.writer_queue,
            on_commit=self.tail.committed,
            on_write=self.tail.written,
            metrics=self.metrics,
        )
        self.server = WebSocketServer(
            cfg,
            queries=self.queries,
            writer=self.writer,
            live=self.live,
            tail=self.tail,
            metrics=self.metrics,
            policies=self.policies,
        )
        stages: list[Stage] = [
            listener,
            self.tail,
            self.writer,
            ExpirationSweep(self.store, cfg.relay.expiration_sweep_seconds),
        ]
        if cfg.indexer.enabled:
            self.indexer = Indexer(self.dsn, batch_size=cfg.indexer.batch_size)
            listener.subscribe(self.indexer.wake)
            stages.append(self.indexer)
        if cfg.metrics.listen:
            self.monitor = MonitorServer(self.metrics, self.readiness, cfg.metrics.listen)
            stages.append(self.monitor)
        stages.append(self.server)
        return stages

    def _watch(self) -> None:
        """Metrics read when scraped: pool, queue, subscriptions, the indexer, the caches."""
        assert self.pool is not None
        self.metrics.watch_pool(self.pool, lambda: self.store.waiting)

        def now() -> list[Metric]:
            return [
                gauge("fitrelay_writer_queue_events", "Events waiting for the writer",
                      self.writer.queue.qsize()),
                gauge("fitrelay_subscriptions", "Open subscriptions (all connections)",
                      len(self.live)),
                gauge("fitrelay_connections", "Open WebSocket connections",
                      len(self.server.connections)),
            ]  # fmt: skip

        self.metrics.add_callback(now)
        register_metrics(
            self.metrics.registry, lambda: self.indexer.stats if self.indexer else None
        )
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

    async def stop(self) -> None:
        """Stop the stages in reverse order, then release the caches and the pool."""
        await self.stages.stop()
        await self._release()

    async def _release(self) -> None:
        queries = getattr(self, "queries", None)
        if isinstance(queries, CachedStore):
            await queries.close()
        self._unwatch_gc()
        self._unwatch_gc = lambda: None
        for pool in (self.pool, self.write_pool):
            if pool is not None:
                await pool.close()
        self.pool = self.write_pool = None


class IndexProcess:
    """The indexer alone (``fitrelay index``): commit listener, indexer, monitor."""

    def __init__(self, config: Config, dsn: str) -> None:
        self.config = config
        self.dsn = dsn
        self.indexer = Indexer(dsn, batch_size=config.indexer.batch_size)
        self.pool: asyncpg.Pool | None = None
        self.stages = Stages([])

    async def start(self) -> None:
        listener = CommitListener(self.dsn)
        listener.subscribe(self.indexer.wake)
        stages: list[Stage] = [listener, self.indexer]
        if self.config.metrics.listen:
            # Scraped like the relay: the indexer's counters and readiness.
            self.pool = await create_pool(self.dsn, min_size=1, max_size=1)
            metrics = Metrics()
            register_metrics(metrics.registry, lambda: self.indexer.stats)
            stages.append(MonitorServer(metrics, self.readiness, self.config.metrics.listen))
        self.stages = Stages(stages)
        try:
            await self.stages.start()
        except BaseException:
            await self._release()
            raise

    async def readiness(self) -> list[str]:
        return await database_problems(
            self.pool,
            indexer_lag=self.indexer.stats.lag_seconds,
            max_lag=self.config.metrics.ready_max_indexer_lag_seconds,
        )

    async def stop(self) -> None:
        await self.stages.stop()
        await self._release()

    async def _release(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
