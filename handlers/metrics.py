"""Worker metrics (Prometheus): rule runs, step durations, API calls.

A registry of its own: ``tashooks worker`` serves it on ``METRICS_PORT``; in ``serve`` the
receiver's ``/metrics`` includes it.
"""

from __future__ import annotations

from typing import Any

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

        # Labelled children by label values: ``labels()`` costs more than the count itself.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def rule_run(self, rule: str, status: str) -> None:
        """Count one rule run that ended with ``status``."""
        self._child(self.rule_runs, rule, status).inc()

    def step(self, step_type: str, status: str, seconds: float) -> None:
        """Count one step's outcome and observe how long it took."""
        self._child(self.steps, step_type, status).inc()
        self._child(self.step_duration, step_type).observe(seconds)

    def api_call(self, method: str, status: int | str) -> None:
        """Count one API request (``status`` is the HTTP status, or ``error``)."""
        self._child(self.api_calls, method, str(status)).inc()
