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
from dataclasses import dataclass

from handlers.batch import Batcher, Command, script
from receiver.keys import Keys

LOCK_TTL_MS = 15_000
_WAIT_S = 0.01

# Take the lock (KEYS[1]) if free, and then record the event's timestamp as the newest
# handled (KEYS[2]) unless a newer one was: -1 lock busy, 1 stale, 0 fresh. One round trip.
# Idempotent for its token: sent again (a retried batch whose reply was lost), it gives
# the same answer instead of finding the lock busy with itself.
_LOCK_AND_ADVANCE = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[3] then
  if holder then return -1 end
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
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


@dataclass
class Lease:
    """A held resource lock: ``fresh`` tells whether the event is newer than any handled."""

    fresh: bool
    key: str
    token: str
    released: bool = False

    def releasing(self, status: str = "") -> list[Command]:
        """The command that releases the lock, for the run's last write to send (the lock
        counts as released from now on); ``status``, how the run ended, does not matter."""
        self.released = True
        return [release_command(self.key, self.token)]


def release_command(key: str, token: str) -> Command:
    """Delete the lock ``key`` if ``token`` still holds it."""
    return script(_RELEASE, [key], [token])


class ResourceOrder:
    """Locks and timestamps per resource."""

    def __init__(self, batch: Batcher, keys: Keys, retention_s: float) -> None:
        self.batch = batch
        self.keys = keys
        self.retention_ms = int(retention_s * 1000)
        self.held: dict[str, str] = {}  # lock key -> token, refreshed by the heartbeat

    @contextlib.asynccontextmanager
    async def locked(self, resource: str, ts_ms: int) -> AsyncIterator[Lease]:
        """Hold the resource's lock (waiting for another worker to let go of it); the lease
        says whether the event at ``ts_ms`` is fresh or older than one handled, and can hand
        its release to the run's last write (``releasing``) to save a round trip."""
        key = self.keys.resource_lock(resource)
        token = secrets.token_hex(8)
        delay = _WAIT_S
        while True:
            [state] = await self.batch.execute(
                script(
                    _LOCK_AND_ADVANCE,
                    [key, self.keys.resource_last(resource)],
                    [ts_ms, self.retention_ms, token, LOCK_TTL_MS],
                )
            )
            if int(state) >= 0:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.held[key] = token
        lease = Lease(int(state) == 0, key, token)
        try:
            yield lease
        finally:
            self.held.pop(key, None)
            if not lease.released:
                await self.batch.execute(release_command(key, token))

    async def refresh(self) -> None:
        """Extend the locks this worker holds (called by its heartbeat)."""
        if not self.held:
            return
        await self.batch.execute(*(("PEXPIRE", key, LOCK_TTL_MS) for key in list(self.held)))
