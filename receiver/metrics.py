"""Receiver metrics (Prometheus), in a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


class ReceiverMetrics:
    """Counters of deliveries by outcome and event type."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "tashooks_deliveries",
            "Webhook deliveries by outcome and event type",
            ["outcome", "event_type"],
            registry=self.registry,
        )

    def delivery(self, outcome: str, event_type: str = "") -> None:
        self.deliveries.labels(outcome=outcome, event_type=event_type).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
