"""Audit records of rule runs and steps (see README, "The audit stream").

Each record is appended to the audit stream, trimmed to the retention window; a run's
record is also kept in the event's hash (field ``run:<rule>``), so ``GET /events/{id}``
finds an event's runs without scanning the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from handlers.metrics import WorkerMetrics
from receiver.keys import Keys


def _flat(kind: str, fields: dict[str, Any]) -> dict[str, str]:
    flat = {"kind": kind}
    for name, value in fields.items():
        if value is None:
            continue
        flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


@dataclass
class RunLog:
    """What happened in one rule run, built up step by step."""

    event_id: str
    rule: str
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    steps: list[dict[str, Any]] = field(default_factory=list)
    # Step records not yet in the stream: written with the run's next write to Redis, so
    # a step costs no round trip of its own.
    unsent: list[dict[str, str]] = field(default_factory=list)
    # Adds more to the pipeline that records the run's end (e.g. a lock's release).
    on_end: Callable[[Any], Awaitable[None]] | None = None


class Audit:
    """Appends run and step records, trimmed to ``retention_s``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        retention_s: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)
        self.metrics = metrics

    def _min_id(self) -> int:
        return int(time.time() * 1000) - self.retention_ms

    async def record(self, kind: str, **fields: Any) -> None:
        """Append one record; values that are not strings are written as JSON."""
        await self.redis.xadd(
            self.keys.audit,
            _flat(kind, fields),  # type: ignore[arg-type]
            minid=self._min_id(),
            approximate=True,
        )

    def step(self, log: RunLog, **fields: Any) -> None:
        """Note one step's outcome (``step``, ``status``, ``attempt``, ...); it reaches the
        stream with the run's next write (``flush_into``) or its end (``run``)."""
        summary = {k: v for k, v in fields.items() if v is not None and k != "params"}
        log.steps.append(summary)
        log.unsent.append(_flat("step", {"id": log.event_id, "rule": log.rule, **fields}))

    def flush_into(self, pipe: Any, log: RunLog) -> None:
        """Add the run's unsent step records to ``pipe`` (a Redis pipeline)."""
        for record in log.unsent:
            pipe.xadd(self.keys.audit, record, minid=self._min_id(), approximate=True)
        log.unsent.clear()

    async def run(
        self, log: RunLog, status: str, *, delete: str | None = None, **fields: Any
    ) -> None:
        """Record how the run ended, in the stream and in the event's hash (with the unsent
        step records, and deleting ``delete`` — the run's progress key — in the same trip)."""
        now_ms = int(time.time() * 1000)
        if self.metrics is not None:
            self.metrics.rule_runs.labels(rule=log.rule, status=status).inc()
        doc = {
            "rule": log.rule,
            "status": status,
            "started_ms": log.started_ms,
            "duration_ms": now_ms - log.started_ms,
            "steps": log.steps,
            **{k: v for k, v in fields.items() if v is not None},
        }
        event_key = self.keys.event(log.event_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.flush_into(pipe, log)
            if delete is not None:
                pipe.delete(delete)
            if log.on_end is not None:
                await log.on_end(pipe)
            pipe.xadd(
                self.keys.audit,
                _flat(
                    "run",
                    {
                        "id": log.event_id,
                        "rule": log.rule,
                        "status": status,
                        "duration_ms": doc["duration_ms"],
                        **fields,
                    },
                ),  # type: ignore[arg-type]
                minid=self._min_id(),
                approximate=True,
            )
            pipe.hset(event_key, f"run:{log.rule}", json.dumps(doc, default=str))
            pipe.pexpire(event_key, self.retention_ms, nx=True)
            await pipe.execute()
