"""Per-resource order: events about one resource (``data.id``) run their ordered rules one
at a time, in timestamp order; an event older than the newest one handled is stale.

A lock per resource (a Redis key with a token and a short TTL, kept alive by the worker's
heartbeat) serialises workers; ``resource_last`` remembers the newest timestamp handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from receiver.keys import Keys

LOCK_TTL_MS = 15_000
_WAIT_S = 0.01

# Set the newest timestamp when it is newer; return 1 when the event is stale.
_ADVANCE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local ts = tonumber(ARGV[1])
if ts < last then return 1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ResourceOrder:
    """Locks and timestamps per resource."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)
        self.held: dict[str, str] = {}  # lock key -> token, refreshed by the heartbeat
        self._advance = redis.register_script(_ADVANCE)
        self._release = redis.register_script(_RELEASE)

    @contextlib.asynccontextmanager
    async def locked(self, resource: str) -> AsyncIterator[None]:
        """Hold the resource's lock (waiting for another worker to let go of it)."""
        key = self.keys.resource_lock(resource)
        token = secrets.token_hex(8)
        delay = _WAIT_S
        while not await self.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.held[key] = token
        try:
            yield
        finally:
            self.held.pop(key, None)
            await self._release(keys=[key], args=[token])

    async def advance(self, resource: str, ts_ms: int) -> bool:
        """Record ``ts_ms`` as handled; False (and nothing changed) when it is stale."""
        stale = await self._advance(
            keys=[self.keys.resource_last(resource)], args=[ts_ms, self.retention_ms]
        )
        return not bool(stale)

    async def refresh(self) -> None:
        """Extend the locks this worker holds (called by its heartbeat)."""
        if not self.held:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in list(self.held):
                pipe.pexpire(key, LOCK_TTL_MS)
            await pipe.execute()
