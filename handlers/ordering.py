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

# Take the lock (KEYS[1]) if free, and then record the event's timestamp as the newest
# handled (KEYS[2]) unless a newer one was: -1 lock busy, 1 stale, 0 fresh. One round trip.
_LOCK_AND_ADVANCE = """
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[4]) then return -1 end
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
local ts = tonumber(ARGV[1])
if ts < last then return 1 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
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
        self._lock_and_advance = redis.register_script(_LOCK_AND_ADVANCE)
        self._release = redis.register_script(_RELEASE)

    @contextlib.asynccontextmanager
    async def locked(self, resource: str, ts_ms: int) -> AsyncIterator[bool]:
        """Hold the resource's lock (waiting for another worker to let go of it) and say
        whether the event at ``ts_ms`` is fresh (True) or older than one handled (False)."""
        key = self.keys.resource_lock(resource)
        token = secrets.token_hex(8)
        delay = _WAIT_S
        while True:
            state = await self._lock_and_advance(
                keys=[key, self.keys.resource_last(resource)],
                args=[ts_ms, self.retention_ms, token, LOCK_TTL_MS],
            )
            if int(state) >= 0:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.held[key] = token
        try:
            yield int(state) == 0
        finally:
            self.held.pop(key, None)
            await self._release(keys=[key], args=[token])

    async def refresh(self) -> None:
        """Extend the locks this worker holds (called by its heartbeat)."""
        if not self.held:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in list(self.held):
                pipe.pexpire(key, LOCK_TTL_MS)
            await pipe.execute()
