"""The indexer's figures for Prometheus, registered by the indexer stage on the process's
registry (the relay's when ``serve`` runs it, its own under ``fitrelay index``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from indexer.follower import IndexerStats
from relay.scrape import Callback, counter, gauge

__all__ = ["register_metrics"]


def register_metrics(registry: CollectorRegistry, stats: Callable[[], IndexerStats | None]) -> None:
    """Export the indexer's counters and gauges, read from ``stats()`` when scraped."""

    def collect() -> Iterator[Metric]:
        s = stats()
        if s is None:
            return
        yield counter(
            "fitrelay_indexer_events", "Stored fitness events indexed", {(): s.events_indexed}
        )
        yield counter(
            "fitrelay_indexer_removals",
            "Removals (replaced, deleted, expired events) applied to the tables",
            {(): s.removals_applied},
        )
        yield counter(
            "fitrelay_indexer_errors",
            "Things the indexer could not understand, by reason (index_errors rows)",
            {(reason,): n for reason, n in s.errors_by_reason.items()},
            ["reason"],
        )
        yield counter(
            "fitrelay_indexer_references",
            "Exercise and template addresses looked up while indexing, by result"
            " (local: found in the database, a network request avoided; missing: queued)",
            {(result,): s.references[result] for result in ("local", "missing")},
            ["result"],
        )
        yield gauge("fitrelay_indexer_lag_events", "Log positions not indexed yet", s.lag_events)
        yield gauge(
            "fitrelay_indexer_lag_seconds",
            "Age of the oldest stored event not indexed yet (0: caught up)",
            s.lag_seconds,
        )
        yield gauge(
            "fitrelay_indexer_unresolved_references",
            "References to exercises or templates that are not indexed",
            s.unresolved_references,
        )
        yield gauge(
            "fitrelay_indexer_oldest_unresolved_seconds",
            "Time since the oldest event with a resolvable but missing dependency arrived",
            s.oldest_unresolved_seconds,
        )

    registry.register(Callback(collect))
