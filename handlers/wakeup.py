"""An arq worker that wakes when work arrives instead of polling fast.

arq polls its queue every ``poll_delay``; a short delay means low latency but a busy idle
worker. Here the receiver publishes on ``<namespace>:wake`` after it queued deliveries
(inside its ingest script), and a subscriber wakes the worker's loop at once; the poll delay
is only the fallback (and what picks up deferred jobs). The loop also wakes when one of its
own jobs ends, so queued work never waits for the next poll while a slot is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

logger = logging.getLogger("tashooks.worker")

# Claim several due jobs in one round trip (arq claims one at a time, with a WATCH/MULTI
# each): a job is taken when it is still queued, due, and not in progress elsewhere.
# KEYS[1]: the queue. ARGV: now ms, in-progress key prefix, claim ttl ms, job ids...
_CLAIM = """
local out = {}
local now = tonumber(ARGV[1])
for i = 4, #ARGV do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local key = ARGV[2] .. id
    if redis.call('EXISTS', key) == 0 then
      redis.call('SET', key, '1', 'PX', ARGV[3])
      out[#out + 1] = id
      out[#out + 1] = score
    end
  end
end
return out
"""


class WakingWorker(Worker):
    """``arq.worker.Worker`` whose poll loop sleeps until woken or ``poll_delay`` passes."""

    def __init__(self, *args: Any, wake_channel: str, redis_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()
        self._claim: Any = None
        self.wake_channel = wake_channel
        self.redis_url = redis_url
        self.wakeups = 0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start as many of ``job_ids`` as there are free slots, claimed in one script."""
        free = self.max_jobs - self.job_counter
        ids = [j.decode() for j in job_ids]
        ids = [j for j in ids if j not in self.tasks][: max(0, free)]
        if not ids:
            return
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        claimed = await self._claim(
            keys=[self.queue_name],
            args=[
                int(time.time() * 1000),
                in_progress_key_prefix,
                int(self.in_progress_timeout_s * 1000),
                *ids,
            ],
        )
        for i in range(0, len(claimed), 2):
            job_id, score = claimed[i].decode(), int(float(claimed[i + 1]))
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self.wake.set()  # a slot is free: look at the queue now

    async def _listen(self) -> None:
        """Subscribe to the wake channel; reconnect (after a pause) when Redis drops it."""
        while True:
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.wake_channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.wakeups += 1
                            self.wake.set()
            except (RedisError, OSError) as exc:
                logger.debug("wake-up subscription lost (%s); polling until it is back", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(1.0)

    async def main(self) -> None:  # overrides arq's loop; no burst mode here
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        logger.info("worker taking jobs from %s", self.queue_name)
        await log_redis_info(self.pool, logger.debug)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                # Cleared before looking, so work published while we look is not missed.
                self.wake.clear()
                await self._poll_iteration()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_delay_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
