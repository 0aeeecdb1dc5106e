"""Prometheus metrics, on a registry the relay owns (never the global default one).

Labels are bounded: kinds appear by fitness name or NIP-01 class, reasons by their NIP-01
prefix; never a raw kind number, a pubkey or a subscription id.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from relay.nostr.auth import AUTH_KIND
from relay.nostr.errors import PREFIXES
from relay.nostr.event import KindClass, kind_class
from relay.nostr.kinds import KIND_NAMES
from relay.nostr.replies import AuthChallenge, Closed, Counted, NegMsg, Notice, Ok, Reply
from relay.scrape import Callback, counter, gauge

if TYPE_CHECKING:
    import asyncpg

    from relay.storage.cache import QueryCache
    from relay.storage.eventcache import EventCache
    from relay.storage.mirror import Mirror
    from relay.storage.replicas import Replicas

__all__ = ["Metrics", "kind_label"]

_REASONS = PREFIXES
REFUSALS: tuple[tuple[str, str], ...] = (
    *((verb, f"{scope}_rate") for verb in ("EVENT", "REQ", "COUNT") for scope in ("ip", "pubkey")),
    ("connect", "ip_connections"),
    ("EVENT", "plugin_reject"),
    ("EVENT", "plugin_shadow_reject"),
    ("EVENT", "plugin_failure"),
)
"""Every (verb, reason) of ``fitrelay_refusals_total``: the rule that refused, finer than
the NIP-01 prefix the OK, CLOSED and NOTICE counters carry."""
_CLOSE_REASONS = ("client", "slow_client", "shutdown", "protocol_error", "server_error")
_KINDS = (
    *dict.fromkeys(KIND_NAMES.values()),
    *(c.value for c in KindClass),
    "unknown",
)

# The *_created series double the series count and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]

_IN_VERBS = ("EVENT", "REQ", "COUNT", "CLOSE", "AUTH", "NEG-OPEN", "NEG-MSG", "NEG-CLOSE")
_OUT_VERBS = ("EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "COUNT", "AUTH", "NEG-MSG", "NEG-ERR")

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_BATCH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def kind_label(kind: int | None) -> str:
    """A bounded label for a kind: its fitness name, else its NIP-01 class."""
    if kind is None:
        return "unknown"
    name = KIND_NAMES.get(kind)
    return name if name is not None else kind_class(kind).value


def _version() -> str:
    try:
        return version("fitrelay")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


class Metrics:
    """Every metric of one relay process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        # connections and messages
        self.connections_opened = Counter(
            "fitrelay_connections_opened", "WebSocket connections accepted", registry=r
        )
        self.connections_closed = Counter(
            "fitrelay_connections_closed",
            "WebSocket connections closed, by reason",
            ["reason"],
            registry=r,
        )
        self.messages_in = Counter(
            "fitrelay_messages_received", "Client messages, by verb", ["verb"], registry=r
        )
        self.messages_out = Counter(
            "fitrelay_messages_sent", "Relay messages, by verb", ["verb"], registry=r
        )
        self.notices = Counter(
            "fitrelay_notices", "NOTICE messages sent, by reason", ["reason"], registry=r
        )
        self.closed = Counter(
            "fitrelay_subscriptions_closed",
            "CLOSED messages sent (subscriptions ended by the relay), by reason",
            ["reason"],
            registry=r,
        )
        # events
        self.events_accepted = Counter(
            "fitrelay_events_accepted",
            "Events stored (OK true, first time), by kind",
            ["kind"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "fitrelay_events_duplicate", "Events already stored (OK true)", ["kind"], registry=r
        )
        self.events_rejected = Counter(
            "fitrelay_events_rejected",
            "Events refused (OK false), by reason and kind",
            ["reason", "kind"],
            registry=r,
        )
        # writer
        self.writer_batch = Histogram(
            "fitrelay_writer_batch_events", "Events per writer transaction", buckets=_BATCH,
            registry=r,
        )  # fmt: skip
        self.writer_commit = Histogram(
            "fitrelay_writer_commit_seconds", "Time to store and commit one batch",
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
        # queries
        self.req_eose = Histogram(
            "fitrelay_req_eose_seconds", "Time from REQ to EOSE", buckets=_LATENCY, registry=r
        )
        self.req_events = Counter(
            "fitrelay_req_events", "Stored events sent in answer to REQ", registry=r
        )
        self.count_seconds = Histogram(
            "fitrelay_count_seconds", "Time to answer COUNT", buckets=_LATENCY, registry=r
        )
        self.queries_cancelled = Counter(
            "fitrelay_queries_cancelled",
            "REQ or COUNT queries cancelled for running past query_timeout_ms",
            registry=r,
        )
        self.queries_busy = Counter(
            "fitrelay_queries_busy",
            "REQ or COUNT answered 'relay busy': no pooled connection within db.pool_wait_ms",
            registry=r,
        )
        # live fan-out
        self.live_delivery = Histogram(
            "fitrelay_live_delivery_seconds",
            "Time from commit (or arrival, for ephemeral events) to queueing for a subscriber",
            buckets=_LATENCY,
            registry=r,
        )
        self.live_events = Counter(
            "fitrelay_live_events", "Events delivered to live subscriptions", registry=r
        )
        self.slow_disconnects = Counter(
            "fitrelay_slow_client_disconnects",
            "Connections closed because too much outbound data was unsent",
            registry=r,
        )
        # Every bounded label value exists from the start, so series do not appear late.
        for reason in _CLOSE_REASONS:
            self.connections_closed.labels(reason)
        for reason in (*_REASONS, "other"):
            self.notices.labels(reason)
            self.closed.labels(reason)
            for kind in _KINDS:
                self.events_rejected.labels(reason, kind)
        for kind in _KINDS:
            self.events_accepted.labels(kind)
            self.events_duplicate.labels(kind)
        # label children looked up once: the hot paths only call inc()
        self.received = {v: self.messages_in.labels(v) for v in (*_IN_VERBS, "invalid")}
        self.sent = {v.encode(): self.messages_out.labels(v) for v in _OUT_VERBS}

        build = Gauge(
            "fitrelay_build_info", "The running fitrelay version", ["version"], registry=r
        )
        build.labels(_version()).set(1)

    def count_live(self, sent: int, delay: float | None) -> None:
        """One dispatch sent ``sent`` live events, ``delay`` seconds after the commit."""
        self.live_events.inc(sent)
        self.sent[b"EVENT"].inc(sent)
        if delay is not None:
            for _ in range(sent):
                self.live_delivery.observe(delay)

    def count_reply(self, reply: Reply) -> None:
        """Count one reply about to be sent: by verb, and OKs, NOTICEs and CLOSEDs by their
        NIP-01 prefix (and an OK by the event's kind)."""
        if isinstance(reply, Ok):
            self.sent[b"OK"].inc()
            kind = kind_label(reply.kind)
            if reply.accepted and reply.kind == AUTH_KIND:
                return  # a NIP-42 AUTH answered (kind 22242 is never accepted as an EVENT)
            if not reply.accepted:
                self.events_rejected.labels(reply.prefix or "other", kind).inc()
            elif reply.error is None:
                self.events_accepted.labels(kind).inc()
            else:
                self.events_duplicate.labels(kind).inc()
        elif isinstance(reply, Closed):
            self.sent[b"CLOSED"].inc()
            self.closed.labels(reply.error.prefix).inc()
        elif isinstance(reply, Notice):
            self.sent[b"NOTICE"].inc()
            self.notices.labels(reply.error.prefix).inc()
        elif isinstance(reply, AuthChallenge):
            self.sent[b"AUTH"].inc()
        elif isinstance(reply, Counted):
            self.sent[b"COUNT"].inc()
        elif isinstance(reply, NegMsg):
            self.sent[b"NEG-MSG"].inc()
        else:
            self.sent[b"NEG-ERR"].inc()

    def add_callback(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Register metrics computed at scrape time."""
        self.registry.register(Callback(collect))

    def watch_pool(self, pool: asyncpg.Pool, waiting: Callable[[], int]) -> None:
        def collect() -> Iterator[Metric]:
            size, idle = pool.get_size(), pool.get_idle_size()
            family = GaugeMetricFamily(
                "fitrelay_db_pool_connections", "Pooled connections by state", labels=["state"]
            )
            family.add_metric(["in_use"], size - idle)
            family.add_metric(["idle"], idle)
            yield family
            yield gauge("fitrelay_db_pool_max", "Most pooled connections", pool.get_max_size())
            yield gauge(
                "fitrelay_db_pool_waiting", "Tasks waiting for a pooled connection", waiting()
            )

        self.add_callback(collect)

    def watch_cache(self, cache: Callable[[], QueryCache | None]) -> None:
        """Export the query cache's counters (read when scraped)."""

        def collect() -> Iterator[Metric]:
            c = cache()
            hits, misses, evictions, invalidations, size, entries = (
                (c.hits, c.misses, c.evictions, c.invalidations, c.bytes, len(c))
                if c is not None
                else (0, 0, 0, 0, 0, 0)
            )
            yield counter("fitrelay_cache_hits", "REQ and COUNT answered from memory", {(): hits})
            yield counter(
                "fitrelay_cache_misses", "Cacheable REQ and COUNT sent to the database",
                {(): misses},
            )  # fmt: skip
            yield counter(
                "fitrelay_cache_evictions", "Answers dropped to stay within the bound",
                {(): evictions},
            )  # fmt: skip
            yield counter(
                "fitrelay_cache_invalidations",
                "Answers dropped because a write could change them",
                {(): invalidations},
            )
            yield gauge("fitrelay_cache_bytes", "Estimated memory held by cached answers", size)
            yield gauge("fitrelay_cache_entries", "Cached answers", entries)

        self.add_callback(collect)

    def watch_mirror(self, mirror: Mirror) -> None:
        """Export the in-memory mirror's counters (read when scraped)."""

        def collect() -> Iterator[Metric]:
            yield counter(
                "fitrelay_mirror_answers",
                "REQs answered from the in-memory mirror of the newest events",
                {(): mirror.answered},
            )
            yield counter(
                "fitrelay_mirror_declined",
                "REQs the mirror left to PostgreSQL (not settled since a write, an answer"
                " reaching below its horizon, a filter it does not index)",
                {(): mirror.declined},
            )
            yield gauge("fitrelay_mirror_events", "Events held by the mirror", len(mirror))
            yield gauge(
                "fitrelay_mirror_horizon",
                "Oldest created_at the mirror holds every event from (0: it holds all)",
                mirror.horizon or 0,
            )

        self.add_callback(collect)

    def watch_replicas(self, replicas: Replicas | None) -> None:
        """Export where client reads ran and how far each replica is behind (read when
        scraped; the families exist, at 0 or empty, without replicas too)."""
        from relay.storage.replicas import FALLBACK_REASONS

        def collect() -> Iterator[Metric]:
            members = replicas.replicas if replicas is not None else []
            replica_reads = sum(r.reads for r in members)
            primary_reads = replicas.primary_reads if replicas is not None else 0
            yield counter(
                "fitrelay_reads", "Client reads (REQ, COUNT, NIP-77) by where they ran, with"
                " db.read_dsns set", {("primary",): primary_reads, ("replica",): replica_reads},
                ["target"],
            )  # fmt: skip
            fallbacks = replicas.fallbacks if replicas is not None else {}
            yield counter(
                "fitrelay_read_fallbacks", "Client reads run on the primary although"
                " replicas are configured, by why",
                {(reason,): fallbacks.get(reason, 0) for reason in FALLBACK_REASONS},
                ["reason"],
            )  # fmt: skip
            lag = GaugeMetricFamily(
                "fitrelay_replica_lag_seconds",
                "How long ago the primary had WAL the replica has not replayed",
                labels=["replica"],
            )
            behind = GaugeMetricFamily(
                "fitrelay_replica_lag_bytes", "WAL bytes the replica has not replayed",
                labels=["replica"],
            )  # fmt: skip
            up = GaugeMetricFamily(
                "fitrelay_replica_up", "1 while the replica serves reads (answering, in"
                " recovery, within db.replica_max_lag_ms)", labels=["replica"],
            )  # fmt: skip
            usable = {id(r) for r in replicas.usable()} if replicas is not None else set()
            for r in members:
                lag.add_metric([r.name], r.lag_seconds if r.up else float("nan"))
                behind.add_metric([r.name], r.lag_bytes)
                up.add_metric([r.name], 1.0 if id(r) in usable else 0.0)
            yield from (lag, behind, up)

        self.add_callback(collect)

    def watch_event_cache(self, events: EventCache) -> None:
        """Export the event cache's counters (read when scraped)."""

        def collect() -> Iterator[Metric]:
            yield counter(
                "fitrelay_event_cache_hits",
                "Events of REQ answers whose JSON was held in memory",
                {(): events.hits},
            )
            yield counter(
                "fitrelay_event_cache_misses",
                "Events of REQ answers whose JSON was read from the database",
                {(): events.misses},
            )
            yield counter(
                "fitrelay_event_cache_evictions",
                "Events' JSON dropped from memory to stay within the bound",
                {(): events.evictions},
            )
            yield gauge(
                "fitrelay_event_cache_bytes", "Estimated memory held by events' JSON", events.bytes
            )
            yield gauge("fitrelay_event_cache_entries", "Events whose JSON is held", len(events))

        self.add_callback(collect)

    def watch_refusals(self, *sources: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Export refusals by (verb, reason), summed over ``sources`` (read when scraped)."""

        def collect() -> Iterator[Metric]:
            totals: dict[tuple[str, ...], float] = dict.fromkeys(REFUSALS, 0)
            for source in sources:
                for key, n in source().items():
                    totals[key] = totals.get(key, 0) + n
            yield counter(
                "fitrelay_refusals",
                "Messages and connections refused by a rate limit, a cap or the write "
                "policy plugin, by verb and reason",
                totals,
                ["verb", "reason"],
            )

        self.add_callback(collect)

    def watch_gc(self) -> Callable[[], None]:
        """Export the garbage collector's collections and the time they took, by generation,
        and how many objects start-up froze out of its sight (``fitrelay serve`` freezes what
        it allocated before serving); returns the function that stops the timing.

        A collection stops the event loop: its time is the pause every connection waited.
        The timing callback only adds floats (no lock, so a collection that starts while a
        metric holds its lock cannot deadlock on it); the samples are built when scraped."""
        paused = [0.0] * len(gc.get_stats())
        started = [0.0]

        def timed(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                paused[info["generation"]] += time.perf_counter() - started[0]

        def collect() -> Iterator[Metric]:
            generations = [str(n) for n in range(len(paused))]
            yield counter(
                "fitrelay_gc_collections",
                "Garbage collections of this process, by generation",
                {(g,): s["collections"] for g, s in zip(generations, gc.get_stats(), strict=True)},
                ["generation"],
            )
            yield counter(
                "fitrelay_gc_pause_seconds",
                "Time the event loop stood still for garbage collections, by generation",
                {(g,): p for g, p in zip(generations, paused, strict=True)},
                ["generation"],
            )
            yield gauge(
                "fitrelay_gc_frozen_objects",
                "Objects frozen out of the collector's sight at start-up",
                gc.get_freeze_count(),
            )

        gc.callbacks.append(timed)
        self.add_callback(collect)
        return lambda: gc.callbacks.remove(timed)
