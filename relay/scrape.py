"""Metrics computed when Prometheus scrapes: small builders shared by every stage that
exports its own figures (the relay's parts, the indexer)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Callback", "counter", "gauge"]


class Callback(Collector):
    """Metrics read at scrape time from a function (pool sizes, indexer stats, cache)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        return []


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    """One gauge sample for a scrape-time callback."""
    family = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


def counter(
    name: str,
    doc: str,
    samples: Mapping[tuple[str, ...], float],
    labels: list[str] | None = None,
) -> Metric:
    """One counter family (labelled samples) for a scrape-time callback."""
    family = CounterMetricFamily(name, doc, labels=labels or [])
    for values, value in samples.items():
        family.add_metric(list(values), value)
    return family
