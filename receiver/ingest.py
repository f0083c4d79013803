"""Durable ingest: dedup mark, queued job and audit record in one atomic Lua script.

Either all three writes happen or none does (a script runs atomically, and with AOF it is
persisted as one transaction), so a delivery is never queued without its dedup mark, nor
marked as seen without being queued.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from arq.jobs import serialize_job
from redis.exceptions import RedisError

from receiver import jobs
from receiver.events import FUTURE_SKEW, Event, canonical_json, new_event_id
from receiver.exceptions import StoreUnavailable
from receiver.keys import Keys

# KEYS: dedup, job, queue, audit, event hash
# ARGV: event id, job bytes, score ms, job ttl ms, dedup ttl s, audit min id,
#       type, resource, source, body
_STORE = """
local existing = redis.call('GET', KEYS[1])
if existing then
  redis.call('XADD', KEYS[4], 'MINID', '~', ARGV[6], '*',
    'kind', 'delivery', 'status', 'duplicate', 'id', existing,
    'type', ARGV[7], 'resource', ARGV[8], 'source', ARGV[9])
  return {0, existing}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local sid = redis.call('XADD', KEYS[4], 'MINID', '~', ARGV[6], '*',
  'kind', 'delivery', 'status', 'accepted', 'id', ARGV[1],
  'type', ARGV[7], 'resource', ARGV[8], 'source', ARGV[9], 'event', ARGV[10])
redis.call('HSET', KEYS[5], 'stream', sid, 'type', ARGV[7], 'resource', ARGV[8],
  'received_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
return {1, ARGV[1]}
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of ``Ingestor.store``: the event id, and whether it was new."""

    id: str
    new: bool


class Ingestor:
    """Writes validated deliveries to Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, window_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.window_s = window_s
        self._script = redis.register_script(_STORE)

    async def store(self, event: Event, source: str = "") -> Stored:
        """Store and queue ``event`` unless the same event was seen within the window.

        Raises ``StoreUnavailable`` when Redis does not confirm: the caller must not ack.
        """
        now_ms = int(time.time() * 1000)
        event_id = new_event_id(now_ms)
        canonical = event.canonical or canonical_json(event.raw)
        job = serialize_job(
            jobs.PROCESS_EVENT,
            (jobs.event_payload(event_id, event.raw, now_ms, event.timestamp_ms),),
            {},
            None,
            now_ms,
            serializer=jobs.serialize,
        )
        window_ms = int(self.window_s * 1000)
        try:
            result = await self._script(
                keys=[
                    self.keys.dedup(hashlib.sha256(canonical).hexdigest()),
                    self.keys.job(event_id),
                    self.keys.queue,
                    self.keys.audit,
                    self.keys.event(event_id),
                ],
                args=[
                    event_id,
                    job,
                    now_ms,
                    # The job lives as long as the delivery is remembered: a worker that is
                    # down for days still finds it (arq's default would be one day).
                    window_ms,
                    # Remembered as long as its timestamp is acceptable: the window, plus
                    # the 5 minutes an event may be ahead of our clock.
                    max(1, int(self.window_s + FUTURE_SKEW.total_seconds())),
                    now_ms - window_ms,
                    event.type,
                    event.resource_id or "",
                    source,
                    canonical,
                ],
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        new, stored_id = result
        return Stored(
            id=stored_id.decode() if isinstance(stored_id, bytes) else str(stored_id), new=bool(new)
        )

    async def rules_version(self) -> str | None:
        """The version hash workers published when they last loaded the rules."""
        try:
            raw = await self.redis.get(self.keys.rules_version)
        except (RedisError, OSError):
            return None
        return raw.decode() if isinstance(raw, bytes) else None

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False
