"""Prometheus metrics: gauges read from the engine at scrape time, counters and histograms fed
by the engine's synchronous listener (one registry per extension, so apps don't collide)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from queuetasks.engine import Engine, EngineEvent, EventKind

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 900, 3600)
_GC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_OUTCOMES = {
    EventKind.ASSIGNED: "assigned",
    EventKind.REJECTED: "rejected",
    EventKind.EXPIRED: "expired",
    EventKind.WITHDRAWN: "withdrawn",
    EventKind.REFUSED: "refused",
}


class _EngineGauges(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._engine.statistics()
        for name, key, text in (
            ("queuetasks_waiting_operators", "waiting_operators", "Operators in the queue."),
            ("queuetasks_open_streams", "open_streams", "Open wait-sse streams."),
            ("queuetasks_pending_tasks", "pending_tasks", "Tasks waiting for an operator."),
            ("queuetasks_open_offers", "open_offers", "Offers awaiting an answer."),
            ("queuetasks_operators", "operators", "Operators the engine knows now."),
        ):
            yield GaugeMetricFamily(name, text, value=stats.get(key, 0))


class Metrics:
    """Owns the registry; ``listener`` goes to ``Engine.add_listener``."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_EngineGauges(engine))
        self.tasks = Counter("queuetasks_tasks", "Tasks by event (added, pushed, cancelled).",
                             ["event"], registry=self.registry)
        self.offers = Counter("queuetasks_offers", "Offers made, and how they ended.",
                              ["outcome"], registry=self.registry)
        self.time_to_offer = Histogram(
            "queuetasks_time_to_offer_seconds", "From add_task to an offer.",
            buckets=_BUCKETS, registry=self.registry)
        self.time_to_assign = Histogram(
            "queuetasks_time_to_assign_seconds", "From add_task to assigned.",
            buckets=_BUCKETS, registry=self.registry)
        self.gc_pause = Histogram(
            "queuetasks_gc_pause_seconds",
            "How long each garbage collection stopped the server, by generation.",
            ["generation"], buckets=_GC_BUCKETS, registry=self.registry)
        for generation in ("0", "1", "2"):
            self.gc_pause.labels(generation)
        for outcome in ("offered", "claimed", *_OUTCOMES.values()):
            self.offers.labels(outcome)
        for event in ("added", "pushed", "cancelled", "delivered"):
            self.tasks.labels(event)

    def listener(self, event: EngineEvent) -> None:
        kind = event.kind
        if kind is EventKind.OFFERED:
            self.offers.labels("offered").inc()
            self.time_to_offer.observe(event.age)
        elif kind in _OUTCOMES:
            claimed = kind is EventKind.ASSIGNED and event.detail == "claimed"
            self.offers.labels("claimed" if claimed else _OUTCOMES[kind]).inc()
            if kind is EventKind.ASSIGNED:
                self.time_to_assign.observe(event.age)
        else:
            self.tasks.labels(kind.value).inc()

    def observe_gc_pause(self, generation: int, seconds: float, collected: int) -> None:
        """For ``GcPauses``: one collection's duration."""
        self.gc_pause.labels(str(generation)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
