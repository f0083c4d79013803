"""Per-rule concurrency limits across every worker: a counting semaphore in Redis.

Each holder is a member of a sorted set scored by when its claim expires; claims of a dead
worker expire by themselves, live ones are extended by the worker's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from receiver.keys import Keys

CLAIM_TTL_MS = 15_000

# KEYS: the rule's set; ARGV: now ms, limit, expiry ms, token. 1 when the slot is taken.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], 60000)
  return 1
end
return 0
"""


class RuleSlots:
    """Claims and releases slots of rules that set ``concurrency``."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.held: dict[str, set[str]] = {}  # set key -> tokens this worker holds
        self._acquire = redis.register_script(_ACQUIRE)

    @contextlib.asynccontextmanager
    async def hold(self, rule: str, limit: int) -> AsyncIterator[None]:
        """Wait for one of ``limit`` slots of ``rule``, hold it for the block."""
        key = self.keys.concurrency(rule)
        token = secrets.token_hex(8)
        delay = 0.01
        while True:
            now_ms = int(time.time() * 1000)
            if await self._acquire(keys=[key], args=[now_ms, limit, now_ms + CLAIM_TTL_MS, token]):
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.held.setdefault(key, set()).add(token)
        try:
            yield
        finally:
            self.held[key].discard(token)
            await self.redis.zrem(key, token)

    async def refresh(self) -> None:
        """Extend this worker's claims (called by its heartbeat)."""
        expiry = int(time.time() * 1000) + CLAIM_TTL_MS
        claims = [(key, token) for key, tokens in self.held.items() for token in tokens]
        if not claims:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, token in claims:
                pipe.zadd(key, {token: expiry}, xx=True)
                pipe.pexpire(key, 60_000)
            await pipe.execute()
