"""Receiver metrics (Prometheus), in a registry of the app's own.

Event types become label values only when the platform documents them (others count as
``other``): a sender cannot grow the number of series without bound.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from receiver.events import KNOWN_EVENT_TYPES


class ReceiverMetrics:
    """Deliveries by outcome and event type, Redis errors, and gauges read from Redis at
    scrape time (queue depth, dead letters). ``extra`` registries (a worker's, in the same
    process) are served along."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.extra: list[CollectorRegistry] = []
        self.deliveries = Counter(
            "tashooks_deliveries",
            "Webhook deliveries by outcome and event type",
            ["outcome", "event_type"],
            registry=self.registry,
        )
        self._deliveries: dict[tuple[str, str], Any] = {}
        self.redis_errors = Counter(
            "tashooks_redis_errors",
            "Redis operations that failed",
            ["component"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tashooks_queue_depth",
            "Jobs waiting in the queue (due now or deferred)",
            registry=self.registry,
        )
        self.deadletters = Gauge(
            "tashooks_deadletters", "Rule runs in the dead-letter list", registry=self.registry
        )

    def delivery(self, outcome: str, event_type: str = "") -> None:
        label = event_type if not event_type or event_type in KNOWN_EVENT_TYPES else "other"
        # The labelled child, looked up once (``labels()`` costs more than the count).
        child = self._deliveries.get((outcome, label))
        if child is None:
            child = self._deliveries[outcome, label] = self.deliveries.labels(outcome, label)
        child.inc()

    def render(self) -> tuple[bytes, str]:
        body = b"".join(generate_latest(r) for r in (self.registry, *self.extra))
        return body, CONTENT_TYPE_LATEST
