"""Durable ingest: dedup mark, queued job, audit record and event hash, written by one
Lua script — all or nothing — for a whole batch of deliveries at a time.

Concurrent requests are coalesced: each ``store`` call joins the batch that leaves with the
next round trip to Redis (up to two batches are out at once), and every caller learns its
own outcome when its batch's script returns.
One round trip serves many deliveries, and none is acknowledged before Redis confirmed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiver import jobs
from receiver.events import FUTURE_SKEW, Event, new_event_id
from receiver.exceptions import StoreUnavailable
from receiver.keys import Keys

# KEYS: queue, audit, then per delivery: dedup, job, event hash
# ARGV: now ms, job ttl ms, dedup ttl s, audit min id, wake channel,
#       then per delivery: event id, job bytes, type, resource, source, canonical JSON
# Returns per delivery: 1 and its id (stored), or 0 and the first delivery's id.
_STORE = """
local out = {}
local n = (#KEYS - 2) / 3
local queued = 0
for i = 0, n - 1 do
  local k, a = 3 + i * 3, 6 + i * 6
  local existing = redis.call('GET', KEYS[k])
  if existing then
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[4], '*',
      'kind', 'delivery', 'status', 'duplicate', 'id', existing,
      'type', ARGV[a + 2], 'resource', ARGV[a + 3], 'source', ARGV[a + 4])
    out[#out + 1] = 0
    out[#out + 1] = existing
  else
    redis.call('SET', KEYS[k], ARGV[a], 'EX', ARGV[3])
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[a])
    local sid = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[4], '*',
      'kind', 'delivery', 'status', 'accepted', 'id', ARGV[a],
      'type', ARGV[a + 2], 'resource', ARGV[a + 3], 'source', ARGV[a + 4],
      'event', ARGV[a + 5])
    redis.call('HSET', KEYS[k + 2], 'stream', sid, 'type', ARGV[a + 2],
      'resource', ARGV[a + 3], 'received_ms', ARGV[1])
    redis.call('PEXPIRE', KEYS[k + 2], ARGV[2])
    out[#out + 1] = 1
    out[#out + 1] = ARGV[a]
    queued = queued + 1
  end
end
if queued > 0 then redis.call('PUBLISH', ARGV[5], queued) end
return out
"""
# Deliveries per script call: big enough to absorb a burst, small enough that one script
# never holds Redis for long.
MAX_BATCH = 256
# Script calls in flight at once. With one, the receiver idles while Redis runs a batch (and
# fsyncs it) and Redis idles while the receiver reads the next: a second batch may leave
# while one is out, once it is big enough to be worth a round trip of its own. (Measured
# with bench/ingest.py's load and appendfsync always: 10-30 % more deliveries/s than one
# batch at a time; 3 or 4 in flight, or a second batch of any size, did no better.)
MAX_IN_FLIGHT = 2
MIN_PIPELINED = 16


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of ``Ingestor.store``: the event id, and whether it was new."""

    id: str
    new: bool


@dataclass(slots=True)
class _Pending:
    event: Event
    source: str
    future: asyncio.Future[Stored]


class Ingestor:
    """Writes validated deliveries to Redis, coalescing concurrent ones."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, window_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.window_s = window_s
        self._script = redis.register_script(_STORE)
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # batches taken and not yet answered
        self._scheduled = False  # a flusher takes the pending deliveries on its next turn
        self.batches = 0  # script calls made (for tests and metrics)

    async def store(self, event: Event, source: str = "") -> Stored:
        """Store and queue ``event`` unless the same event was seen within the window.

        Raises ``StoreUnavailable`` when Redis does not confirm: the caller must not ack.
        """
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(event, source, future))
        self._maybe_flush()
        return await future

    def _maybe_flush(self) -> None:
        """Start a batch when none is out, or when the pending ones are worth a second."""
        if self._scheduled or not self._pending:
            return
        if self._in_flight == 0 or (
            self._in_flight < MAX_IN_FLIGHT and len(self._pending) >= MIN_PIPELINED
        ):
            self._scheduled = True
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush(self) -> None:
        # Let every request that is ready in this turn of the loop join the batch.
        await asyncio.sleep(0)
        self._scheduled = False
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._in_flight += 1
        try:
            self._maybe_flush()  # more than one batch was waiting
            await self._deliver(batch)
        finally:
            self._in_flight -= 1
        self._maybe_flush()

    async def _deliver(self, batch: list[_Pending]) -> None:
        try:
            results = await self._write(batch)
        except (RedisError, OSError) as exc:
            error = StoreUnavailable(str(exc) or type(exc).__name__)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        except BaseException as exc:  # cancelled: nobody may be left waiting
            for item in batch + self._pending:
                if not item.future.done():
                    item.future.set_exception(StoreUnavailable(repr(exc)))
            self._pending = []
            raise
        for item, stored in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(stored)

    async def _write(self, batch: list[_Pending]) -> list[Stored]:
        now_ms = int(time.time() * 1000)
        window_ms = int(self.window_s * 1000)
        keys = [self.keys.queue, self.keys.audit]
        args: list[bytes | str | int] = [
            now_ms,
            # The job lives as long as the delivery is remembered: a worker that is down for
            # days still finds it (arq's default would be one day).
            window_ms,
            # Remembered as long as its timestamp is acceptable: the window, plus the
            # 5 minutes an event may be ahead of our clock.
            max(1, int(self.window_s + FUTURE_SKEW.total_seconds())),
            # The audit stream's MINID: never below 0, which XADD would refuse (after the
            # script had written the keys before it: a script is not rolled back).
            max(0, now_ms - window_ms),
            self.keys.wake,
        ]
        for item in batch:
            event = item.event
            event_id = new_event_id(now_ms)
            keys += [
                self.keys.dedup(event.digest),
                self.keys.job(event_id),
                self.keys.event(event_id),
            ]
            args += [
                event_id,
                jobs.process_event_job(event_id, event.canonical, now_ms, event.timestamp_ms),
                event.type,
                event.resource_id or "",
                item.source,
                event.canonical,
            ]
        self.batches += 1
        flat = await self._script(keys=keys, args=args)
        return [Stored(id=flat[i + 1].decode(), new=bool(flat[i])) for i in range(0, len(flat), 2)]

    async def close(self) -> None:
        """Finish the batch in flight (requests still being answered get their outcome)."""
        while self._flushers:  # a batch that ends may start the next
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._flushers)

    async def rules_version(self) -> str | None:
        """The version hash workers published when they last loaded the rules."""
        try:
            raw = await self.redis.get(self.keys.rules_version)
        except (RedisError, OSError):
            return None
        return raw.decode() if isinstance(raw, bytes) else None

    async def depths(self) -> tuple[int, int] | None:
        """(jobs queued, dead letters), or None when Redis does not answer."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.keys.queue)
                pipe.zcard(self.keys.deadletter_index)
                queued, dead = await pipe.execute()
        except (RedisError, OSError):
            return None
        return int(queued), int(dead)

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False
