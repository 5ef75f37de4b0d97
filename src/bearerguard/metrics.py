"""Prometheus metrics for a protector (the ``metrics`` extra).

Two lines::

    from bearerguard.metrics import PrometheusMetrics
    PrometheusMetrics(require_oauth)

Counters are read from ``require_oauth.stats()`` at scrape time, so they cost
nothing per request; the latency histogram costs two clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .core.stats import GuardStats

__all__ = ["Observed", "PrometheusMetrics"]


class Observed(Protocol):
    """What is measured: a ``ResourceProtector``, or any front's ``Guard``."""

    observe_latency: Callable[[float], None] | None

    def stats(self) -> GuardStats: ...


class _StatsCollector(Collector):
    def __init__(self, protector: Observed, namespace: str) -> None:
        self.protector = protector
        self.ns = namespace

    def collect(self) -> Iterator[Metric]:
        stats = self.protector.stats()
        outcomes = CounterMetricFamily(
            f"{self.ns}_validations",
            "Authorizations by outcome and error code.",
            labels=["outcome", "error"],
        )
        outcomes.add_metric(["accepted", ""], stats["validations"]["accepted"])
        for error, count in sorted(stats["validations"]["refused"].items()):
            outcomes.add_metric(["refused", error], count)
        yield outcomes
        cache = stats["cache"]
        if cache is not None:
            events = CounterMetricFamily(
                f"{self.ns}_cache_events", "Token cache events.", labels=["event"]
            )
            for event in ("hits", "misses", "negative_hits", "evictions", "single_flight_waits"):
                events.add_metric([event], cache[event])
            yield events
            yield GaugeMetricFamily(f"{self.ns}_cache_entries", "Cached tokens.", cache["size"])
        yield CounterMetricFamily(
            f"{self.ns}_revocations_applied", "Revocations applied.", stats["revocations_applied"]
        )
        validator_events = CounterMetricFamily(
            f"{self.ns}_validator_events",
            "Validator counters (JWKS fetches, introspection calls, failures).",
            labels=["validator", "event"],
        )
        for name, counters in sorted(stats["validators"].items()):
            for event, value in sorted(counters.items()):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    validator_events.add_metric([name, event], value)
        yield validator_events


class PrometheusMetrics:
    """Expose ``protector``'s counters and a validation-latency histogram."""

    def __init__(
        self,
        protector: Observed,
        *,
        registry: CollectorRegistry = REGISTRY,
        namespace: str = "bearerguard",
    ) -> None:
        self.latency = Histogram(
            f"{namespace}_authorization_seconds",
            "Time to authorize a request (token lookup, validation, scope check).",
            registry=registry,
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1, 0.5, 2.5),
        )
        self.collector = _StatsCollector(protector, namespace)
        registry.register(self.collector)
        protector.observe_latency = self.latency.observe
