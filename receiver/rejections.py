"""Rejected deliveries, aggregated: a flood of bad requests must not flood the audit stream.

Each (reason, source) pair is counted in memory and written as one ``kind=rejected``
record per flush interval (fields ``reason``, ``source``, ``count``, ``first_ms``,
``last_ms``), so a million bad requests cost a handful of records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiver.keys import Keys

logger = logging.getLogger("tashooks.receiver")
FLUSH_S = 5.0
# Distinct (reason, source) pairs kept between flushes; beyond that they are lumped together.
MAX_PAIRS = 1000


@dataclass(slots=True)
class _Count:
    count: int
    first_ms: int
    last_ms: int


class Rejections:
    """Counts rejections and flushes them to the audit stream every ``FLUSH_S`` seconds."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)
        self.pending: dict[tuple[str, str], _Count] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, reason: str, source: str) -> None:
        """Count one rejection (no I/O: the hot path stays cheap)."""
        now_ms = int(time.time() * 1000)
        key = (reason, source)
        if key not in self.pending and len(self.pending) >= MAX_PAIRS:
            key = (reason, "*")
        entry = self.pending.get(key)
        if entry is None:
            self.pending[key] = _Count(1, now_ms, now_ms)
        else:
            entry.count += 1
            entry.last_ms = now_ms

    async def flush(self) -> None:
        """Write what was counted since the last flush (kept for next time if Redis fails)."""
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        min_id = max(0, int(time.time() * 1000) - self.retention_ms)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (reason, source), entry in batch.items():
                    pipe.xadd(
                        self.keys.audit,
                        {
                            "kind": "rejected",
                            "reason": reason,
                            "source": source,
                            "count": entry.count,
                            "first_ms": entry.first_ms,
                            "last_ms": entry.last_ms,
                        },
                        minid=min_id,
                        approximate=True,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not record %d rejected deliveries: %s", len(batch), exc)
            for key, entry in batch.items():
                kept = self.pending.setdefault(key, _Count(0, entry.first_ms, entry.last_ms))
                kept.count += entry.count
                kept.first_ms = min(kept.first_ms, entry.first_ms)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
