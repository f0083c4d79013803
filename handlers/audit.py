"""Audit records of rule runs and steps, appended to the audit stream (see README)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from receiver.keys import Keys


class Audit:
    """Appends run and step records to the audit stream, trimmed to the retention window."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)

    async def record(self, kind: str, **fields: Any) -> None:
        """Append one record; values that are not strings are written as JSON."""
        flat = {"kind": kind}
        for name, value in fields.items():
            if value is None:
                continue
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
        min_id = int(time.time() * 1000) - self.retention_ms
        await self.redis.xadd(self.keys.audit, flat, minid=min_id, approximate=True)  # type: ignore[arg-type]
