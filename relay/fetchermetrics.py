"""The fetcher's and freshness's figures for a scrape (docs/metrics.md names each).

Per-relay series carry the configured upstreams by URL and every other relay (reference
hints, authors' NIP-65 lists) folded into ``other``: a label per hinted URL would let any
author mint series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from relay.fetcher import Fetcher, FetchStats
from relay.freshness import FreshnessStats
from relay.scrape import counter, gauge

__all__ = ["fetcher_metrics"]

_OTHER = "other"


def fetcher_metrics(fetcher: Fetcher | None) -> list[Metric]:
    """The fetcher's samples (zeros when it does not run in this process)."""
    stats = fetcher.stats if fetcher is not None else FetchStats()
    fresh = fetcher.refresher.stats if fetcher is not None else FreshnessStats()
    upstreams = fetcher.upstreams if fetcher is not None else []
    return [
        counter("fitrelay_fetcher_fetches", "Missing addresses fetched, by outcome",
                {(o,): n for o, n in stats.outcomes.items()}, ["outcome"]),
        counter("fitrelay_fetcher_requests", "REQs sent to upstream relays, by result",
                {(r,): n for r, n in stats.requests.items()}, ["result"]),
        counter("fitrelay_fetcher_relay_lists",
                "Relay lists (kind 10002) fetched from upstreams for authors without one here",
                {(): stats.relay_lists}),
        counter("fitrelay_fetcher_relay_lists_local",
                "Relay lists a round needed and found in the database (fetches avoided)",
                {(): stats.relay_lists_local}),
        gauge("fitrelay_fetcher_queue_depth", "Missing addresses not given up",
              stats.depth),
        gauge("fitrelay_fetcher_oldest_missing_seconds",
              "Age of the oldest pending missing dependency", stats.oldest_seconds),
        _last_success(stats.last_success, upstreams),
        *_latency(stats.latency, upstreams),
        _errors(stats.errors, upstreams),
        counter("fitrelay_freshness_checks",
                "Background re-checks of possibly stale data, by outcome",
                {(o,): n for o, n in fresh.checks.items()}, ["outcome"]),
        gauge("fitrelay_freshness_tracked",
              "Addresses freshness tracks (indexed authors' profiles and relay lists,"
              " referenced exercises and templates)", fresh.tracked),
        gauge("fitrelay_freshness_stale",
              "Tracked addresses past their threshold, served as stored until re-checked",
              fresh.stale),
        gauge("fitrelay_freshness_stale_ratio",
              "Share of tracked addresses that are stale (what a client is served as is)",
              fresh.stale_ratio),
    ]  # fmt: skip


def _label(url: str, upstreams: Sequence[str]) -> str:
    return url if url in upstreams else _OTHER


def _last_success(last: Mapping[str, float], upstreams: Sequence[str]) -> Metric:
    family = GaugeMetricFamily(
        "fitrelay_fetcher_upstream_last_success",
        "Unix time of the last answered REQ per configured upstream (other: hints, lists)",
        labels=["upstream"],
    )
    latest: dict[str, float] = {}
    for url, at in last.items():
        label = _label(url, upstreams)
        latest[label] = max(at, latest.get(label, at))
    for label, at in latest.items():
        family.add_metric([label], at)
    return family


def _latency(latency: Mapping[str, tuple[int, float]], upstreams: Sequence[str]) -> list[Metric]:
    """Answered REQs and their time from connecting to EOSE, per configured upstream (other):
    the mean latency is the rate of the seconds over the rate of the answers."""
    totals: dict[str, tuple[int, float]] = {}
    for url, (count, spent) in latency.items():
        label = _label(url, upstreams)
        have = totals.get(label, (0, 0.0))
        totals[label] = (have[0] + count, have[1] + spent)
    answered = CounterMetricFamily(
        "fitrelay_fetcher_upstream_answered",
        "REQs answered up to EOSE, per configured upstream (other: hints, lists)",
        labels=["upstream"],
    )
    seconds = CounterMetricFamily(
        "fitrelay_fetcher_upstream_answer_seconds",
        "Seconds from connecting to EOSE of the answered REQs, per configured upstream (other)",
        labels=["upstream"],
    )
    for label, (count, total) in totals.items():
        answered.add_metric([label], count)
        seconds.add_metric([label], total)
    return [answered, seconds]


def _errors(errors: Mapping[str, int], upstreams: Sequence[str]) -> Metric:
    family = CounterMetricFamily(
        "fitrelay_fetcher_upstream_errors",
        "REQs that failed (refused, silent, broken), per configured upstream (other)",
        labels=["upstream"],
    )
    totals: dict[str, int] = {}
    for url, count in errors.items():
        label = _label(url, upstreams)
        totals[label] = totals.get(label, 0) + count
    for label, count in totals.items():
        family.add_metric([label], count)
    return family
