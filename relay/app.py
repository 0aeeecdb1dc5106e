"""The composition root: the one module that builds processes from the relay's and the
indexer's stages, and the only one that imports both.

``fitrelay serve`` is, in start order: the replicas (when ``db.read_dsns`` names any), the
commit listener, the live tail, the writer, the
expiration sweep, the write-policy plugin (when configured), the indexer (unless
``indexer.enabled = false``), the fetcher (when ``fetcher.enabled``), the monitor
(``/metrics``, ``/healthz``, ``/readyz``) and the WebSocket server; they stop in the reverse
order, so the server stops taking EVENTs before the writer commits what it holds (and the
plugin has vetted them), and the pool closes last.
``fitrelay index`` is the commit listener, the indexer, the fetcher and the monitor. A new
capability is one more entry in a list here, and policy hooks are built here once and
handed to the session and the writer's front.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
from prometheus_client.core import Metric

from indexer.follower import Indexer
from indexer.metrics import register_metrics
from relay.config import Config
from relay.fetcher import Fetcher
from relay.fetchermetrics import fetcher_metrics
from relay.nostr.filters import SEARCH_OFF, FilterRules
from relay.nostr.kinds import PRESETS
from relay.nostr.policy import DEFAULT_POLICIES, Policies
from relay.nostr.ratelimit import VERBS, Rate, RateLimiter
from relay.nostr.rules import Rules
from relay.scrape import counter, gauge
from relay.server.connection import Connection
from relay.server.live import LiveIndex, LogTail
from relay.server.metrics import Metrics
from relay.server.monitor import MonitorServer, database_problems
from relay.server.partitionkeeper import PartitionKeeper
from relay.server.plugin import WritePolicyPlugin
from relay.server.sweep import ExpirationSweep
from relay.server.websocket import WebSocketServer
from relay.server.writer import Writer
from relay.stages import Stage, Stages
from relay.storage.cache import QueryCache
from relay.storage.cachedstore import CachedStore, PagedStore
from relay.storage.eventcache import EventCache
from relay.storage.indexing import Indexing, prepare, search_ready
from relay.storage.migrate import migrate
from relay.storage.mirror import Mirror, MirroredStore
from relay.storage.notify import CommitListener
from relay.storage.partition import partitioned_as_configured
from relay.storage.postgres import Store, create_pool
from relay.storage.replicas import Replicas

__all__ = ["IndexProcess", "Relay", "indexing_from", "policies_from", "rules_from"]

log = logging.getLogger(__name__)


def policies_from(config: Config, clock: Callable[[], float] = time.monotonic) -> Policies:
    """The policy hooks the configuration asks for: the defaults every relay applies, the
    rules of ``[policy]`` and ``[auth]``, then ``[relay.rate_limits]`` (whose limiter reads
    ``clock``)."""
    return DEFAULT_POLICIES + rules_from(config).policies() + rate_limits_from(config, clock)


def rules_from(config: Config) -> Rules:
    """``[policy]`` and ``[auth]`` as write and read rules (an empty list means no list)."""
    policy, auth = config.policy, config.auth
    allowed = set(policy.kinds_allow)
    if policy.preset:
        allowed |= PRESETS[policy.preset]
    return Rules(
        kinds_allow=frozenset(allowed) if allowed else None,
        kinds_deny=frozenset(policy.kinds_deny),
        pubkeys_allow=frozenset(policy.pubkeys_allow) if policy.pubkeys_allow else None,
        pubkeys_deny=frozenset(policy.pubkeys_deny),
        min_pow_difficulty=policy.min_pow_difficulty,
        auth_writes=auth.required in ("writes", "all"),
        auth_reads=auth.required in ("reads", "all"),
        auth_kinds=frozenset(auth.kinds),
    )


def indexing_from(config: Config) -> Indexing:
    """``[relay.tags]`` and ``[relay.search]``: what the writer indexes besides the event."""
    search = config.relay.search
    return Indexing(
        tag_names=frozenset(config.relay.tags.indexed),
        search_kinds=frozenset(search.kinds) if search.enabled else frozenset(),
    )


SEARCH_MISSING = (
    "search (NIP-50) is not available on this relay: its database lacks the pg_trgm extension"
)


def filter_rules_from(config: Config, search_ready: bool) -> FilterRules:
    """What filters may ask beyond NIP-01: the indexed tag names, and search when it is on
    and the database can run it (``search_ready``)."""
    search = config.relay.search
    on = search.enabled and search_ready
    return FilterRules(
        tag_names=frozenset(config.relay.tags.indexed),
        search_kinds=frozenset(search.kinds) if on else None,
        search_off_reason=SEARCH_MISSING if search.enabled else SEARCH_OFF,
    )


def fetcher_from(config: Config, dsn: str) -> Fetcher:
    """``[fetcher]``, storing what it fetches under the relay's event limits and the write
    rules of ``[policy]`` (AUTH aside: a fetched event has no connection to authenticate)."""
    rules = dataclasses.replace(rules_from(config), auth_writes=False, auth_kinds=frozenset())
    return Fetcher(
        dsn, config.fetcher, config.relay.limits, rules=rules, indexing=indexing_from(config)
    )


def rate_limits_from(config: Config, clock: Callable[[], float]) -> Policies:
    """``[relay.rate_limits]``: one limiter for the process, reported in NIP-11 under the
    custom ``limitation`` keys ``rate_limits`` and ``max_connections_per_ip``."""
    cfg = config.relay.rate_limits
    rates: dict[tuple[str, str], Rate] = {}
    report: dict[str, dict[str, dict[str, float]]] = {}
    for scope, rate_cfg in (("ip", cfg.ip), ("pubkey", cfg.pubkey)):
        for verb in VERBS:
            name = verb.lower()
            per_second = getattr(rate_cfg, f"{name}_per_second")
            if per_second > 0:
                rate = rates[scope, verb] = Rate.of(per_second, getattr(rate_cfg, f"{name}_burst"))
                report.setdefault(scope, {})[verb] = {
                    "per_second": rate.per_second,
                    "burst": rate.burst,
                }
    limitation: dict[str, object] = {}
    if report:
        limitation["rate_limits"] = report
    if cfg.max_connections_per_ip:
        limitation["max_connections_per_ip"] = cfg.max_connections_per_ip
    limiter = RateLimiter(rates, clock, cfg.max_buckets)
    return Policies(throttle=(limiter,) if limiter else (), limitation=limitation)


def replicas_from(
    config: Config, primary_position: Callable[[], Awaitable[int]]
) -> Replicas | None:
    """``db.read_dsns`` as the replicas client reads may run on (None without any)."""
    db = config.db
    if not db.read_dsns:
        return None
    return Replicas(
        db.read_dsns,
        primary_position=primary_position,
        pool_min=db.pool_min,
        pool_max=db.pool_max,
        statement_timeout_ms=config.relay.query_timeout_ms,
        max_lag=db.replica_max_lag_ms / 1000,
        poll=db.replica_poll_ms / 1000,
        retry_max=db.replica_retry_max_ms / 1000,
    )


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
        self.plugin: WritePolicyPlugin | None = None
        self.fetcher: Fetcher | None = None
        self.replicas: Replicas | None = None
        """The hot standbys client reads may run on (``db.read_dsns``)."""
        self.stages = Stages([])
        self.rules = FilterRules()
        """What filters may ask beyond NIP-01, settled at start."""
        self._unwatch_gc: Callable[[], None] = lambda: None
        self.partitioned = False
        """Whether events is partitioned (relay.storage.partition): then a keeper runs."""
        self.keeper: PartitionKeeper | None = None

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
            self.partitioned = await partitioned_as_configured(
                conn, monthly=cfg.db.partitioning == "monthly", ahead=cfg.db.partitions_ahead
            )
            await prepare(conn, indexing_from(cfg))
            ready = await search_ready(conn)
        finally:
            await conn.close()
        if cfg.relay.search.enabled and not ready:
            log.warning(
                "NIP-50 search is off: the database has no pg_trgm extension (or no"
                " search_words_trgm_idx); install PostgreSQL's contrib modules, then see"
                " docs/operations.md#search; search filters get CLOSED unsupported: meanwhile"
            )
        self.rules = filter_rules_from(cfg, ready)
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
        self.mirror = Mirror(cfg.relay.mirror_events) if cfg.relay.mirror_events else None
        self.replicas = replicas = replicas_from(cfg, lambda: self.store.wal_position())
        self.store = Store(
            pool,
            write_pool=write_pool,
            default_limit=cfg.relay.limits.default_limit,
            pool_wait=cfg.db.pool_wait_ms / 1000,
            query_timeout=cfg.relay.query_timeout_ms / 1000,
            events=EventCache(cfg.relay.event_cache_bytes) if cfg.relay.event_cache_bytes else None,
            on_ingest=self.mirror.written if self.mirror is not None else None,
            replicas=replicas,
            indexing=indexing_from(cfg),
            partitioned=self.partitioned,
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
        limit = cfg.relay.limits.default_limit
        # The mirror answers first; what it cannot tell goes to the query cache, then to
        # PostgreSQL.
        self.cached: CachedStore | None = (
            CachedStore(self.store, self.cache, default_limit=limit)
            if self.cache is not None
            else None
        )
        behind: PagedStore = self.cached or self.store
        self.queries: PagedStore = (
            MirroredStore(behind, self.mirror, default_limit=limit)
            if self.mirror is not None
            else behind
        )
        self.listener = listener = CommitListener(self.dsn)
        self.tail = LogTail(self.store, self.live, cache=self.cache, mirror=self.mirror)
        listener.subscribe(self.tail.notified)
        self.writer = Writer(
            self.store,
            max_batch=cfg.relay.max_batch,
            queue_size=cfg.relay.writer_queue,
            on_commit=self.tail.committed,
            on_write=self.tail.written,
            metrics=self.metrics,
        )
        if cfg.relay.write_policy.plugin:
            # A stage of its own (the process is kept running) and an admit rule.
            self.plugin = WritePolicyPlugin(cfg.relay.write_policy)
            self.policies = self.policies + Policies(
                admit_event=(self.plugin.admit,), limitation={"restricted_writes": True}
            )
        self.server = WebSocketServer(
            cfg,
            queries=self.queries,
            writer=self.writer,
            live=self.live,
            tail=self.tail,
            metrics=self.metrics,
            policies=self.policies,
            rules=self.rules,
        )
        stages: list[Stage] = [
            *([replicas] if replicas is not None else []),  # pools open first, close last
            listener,
            self.tail,
            self.writer,
            ExpirationSweep(self.store, cfg.relay.expiration_sweep_seconds),
        ]
        if self.partitioned:
            self.keeper = PartitionKeeper(write_pool, cfg.db.partitions_ahead)
            stages.append(self.keeper)
        if self.plugin is not None:
            stages.append(self.plugin)  # stopped after the server has answered its EVENTs
        if cfg.indexer.enabled:
            self.indexer = Indexer(self.dsn, batch_size=cfg.indexer.batch_size)
            listener.subscribe(self.indexer.wake)
            stages.append(self.indexer)
        if cfg.fetcher.enabled:
            self.fetcher = fetcher_from(cfg, self.dsn)
            listener.subscribe(self.fetcher.wake)
            if self.indexer is not None:
                self.indexer.after_catch_up.append(self.fetcher.wake)
            stages.append(self.fetcher)
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
        # Refusals counted where they are decided (their counters are read when scraped).
        sources: list[Callable[[], Mapping[tuple[str, str], int]]] = [self.server.refused.copy]
        for rule in self.policies.throttle:
            if isinstance(rule, RateLimiter):
                sources.append(rule.refused.copy)
        plugin = self.plugin
        if plugin is not None:
            sources.append(plugin.refused.copy)

        def plugin_health() -> list[Metric]:
            failures = plugin.failures if plugin is not None else {}
            return [
                counter("fitrelay_write_plugin_failures",
                        "Events the write policy plugin did not decide, by cause",
                        {(cause,): failures.get(cause, 0)
                         for cause in ("timeout", "down", "bad_answer")}, ["cause"]),
                counter("fitrelay_write_plugin_restarts",
                        "Times the write policy plugin was started again after it exited",
                        {(): plugin.restarts if plugin is not None else 0}),
            ]  # fmt: skip

        self.metrics.add_callback(plugin_health)
        self.metrics.add_callback(lambda: fetcher_metrics(self.fetcher))
        self.metrics.watch_refusals(*sources)
        register_metrics(
            self.metrics.registry, lambda: self.indexer.stats if self.indexer else None
        )
        self.metrics.watch_cache(lambda: self.cache)
        self.metrics.watch_replicas(self.replicas)
        if self.store.events is not None:
            self.metrics.watch_event_cache(self.store.events)
        if self.mirror is not None:
            self.metrics.watch_mirror(self.mirror)
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
        cached = getattr(self, "cached", None)
        if cached is not None:
            await cached.close()
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
        self.fetcher: Fetcher | None = None
        if config.fetcher.enabled:
            self.fetcher = fetcher_from(config, dsn)
            self.indexer.after_catch_up.append(self.fetcher.wake)
        self.pool: asyncpg.Pool | None = None
        self.stages = Stages([])

    async def start(self) -> None:
        listener = CommitListener(self.dsn)
        listener.subscribe(self.indexer.wake)
        stages: list[Stage] = [listener, self.indexer]
        if self.fetcher is not None:
            listener.subscribe(self.fetcher.wake)
            stages.append(self.fetcher)
        if self.config.metrics.listen:
            # Scraped like the relay: the indexer's and the fetcher's counters, readiness.
            self.pool = await create_pool(self.dsn, min_size=1, max_size=1)
            metrics = Metrics()
            register_metrics(metrics.registry, lambda: self.indexer.stats)
            metrics.add_callback(lambda: fetcher_metrics(self.fetcher))
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
