"""Worker metrics (Prometheus): rule runs, step durations, API calls.

A registry of its own: ``tashooks worker`` serves it on ``METRICS_PORT``; in ``serve`` the
receiver's ``/metrics`` includes it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Steps run from milliseconds (log) to minutes (slow APIs).
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """Counters and histograms of one worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rule_runs = Counter(
            "tashooks_rule_runs",
            "Rule runs by rule and how they ended",
            ["rule", "status"],
            registry=self.registry,
        )
        self.steps = Counter(
            "tashooks_steps",
            "Step attempts' outcomes by step type",
            ["step_type", "status"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "tashooks_step_duration_seconds",
            "Time a step took, retries included",
            ["step_type"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.api_calls = Counter(
            "tashooks_api_calls",
            "Calls to the tasmanian.cloud API by method and status",
            ["method", "status"],
            registry=self.registry,
        )

    def api_call(self, method: str, status: int | str) -> None:
        """Count one API request (``status`` is the HTTP status, or ``error``)."""
        self.api_calls.labels(method=method, status=str(status)).inc()
