"""Audit records of rule runs and steps (see README, "The audit stream").

Each record is appended to the audit stream, trimmed to the retention window; a run's
record is also kept in the event's hash (field ``run:<rule>``), so ``GET /events/{id}``
finds an event's runs without scanning the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from handlers.batch import Batcher, Command
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
    # More commands for the write that records the run's end, given how it ended (e.g. the
    # resource lock's release, the job's removal).
    on_end: Callable[[str], list[Command]] | None = None


class Audit:
    """Appends run and step records, trimmed to ``retention_s``; writes go through the
    worker's ``Batcher`` (one round trip shared with other runs)."""

    def __init__(
        self,
        batch: Batcher,
        keys: Keys,
        retention_s: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.batch = batch
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)
        self.metrics = metrics

    def _xadd(self, record: dict[str, str]) -> Command:
        min_id = max(0, int(time.time() * 1000) - self.retention_ms)
        flat = [x for pair in record.items() for x in pair]
        return ("XADD", self.keys.audit, "MINID", "~", min_id, "*", *flat)

    async def record(self, kind: str, /, then: Sequence[Command] = (), **fields: Any) -> None:
        """Append one record (values that are not strings are written as JSON), and run the
        commands ``then`` in the same trip."""
        await self.batch.execute(self._xadd(_flat(kind, fields)), *then)

    def step(self, log: RunLog, **fields: Any) -> None:
        """Note one step's outcome (``step``, ``status``, ``attempt``, ...); it reaches the
        stream with the run's next write (``flush_into``) or its end (``run``)."""
        summary = {k: v for k, v in fields.items() if v is not None and k != "params"}
        log.steps.append(summary)
        log.unsent.append(_flat("step", {"id": log.event_id, "rule": log.rule, **fields}))

    def take_unsent(self, log: RunLog) -> list[Command]:
        """The commands that write the run's unsent step records (now counted as sent)."""
        commands = [self._xadd(record) for record in log.unsent]
        log.unsent.clear()
        return commands

    def flush_into(self, pipe: Any, log: RunLog) -> None:
        """Add the run's unsent step records to ``pipe`` (a Redis pipeline)."""
        for command in self.take_unsent(log):
            pipe.execute_command(*command)

    async def run(
        self, log: RunLog, status: str, *, delete: str | None = None, **fields: Any
    ) -> None:
        """Record how the run ended, in the stream and in the event's hash (with the unsent
        step records, and deleting ``delete`` — the run's progress key — in the same trip)."""
        now_ms = int(time.time() * 1000)
        if self.metrics is not None:
            self.metrics.rule_run(log.rule, status)
        doc = {
            "rule": log.rule,
            "status": status,
            "started_ms": log.started_ms,
            "duration_ms": now_ms - log.started_ms,
            "steps": log.steps,
            **{k: v for k, v in fields.items() if v is not None},
        }
        event_key = self.keys.event(log.event_id)
        commands = self.take_unsent(log)
        if delete is not None:
            commands.append(("DEL", delete))
        record = {
            "id": log.event_id,
            "rule": log.rule,
            "status": status,
            "duration_ms": doc["duration_ms"],
            **fields,
        }
        commands += [
            self._xadd(_flat("run", record)),
            ("HSET", event_key, f"run:{log.rule}", json.dumps(doc, default=str)),
            ("PEXPIRE", event_key, self.retention_ms, "NX"),
        ]
        if log.on_end is not None:  # after the run's record: what it releases comes last
            commands += log.on_end(status)
        # All or nothing: never a job removed, or a lock released, without the record.
        await self.batch.execute(*commands, atomic=True)
