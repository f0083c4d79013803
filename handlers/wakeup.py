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
from typing import Any

import redis.asyncio as aioredis
from arq.connections import create_pool, log_redis_info
from arq.worker import Worker
from redis.exceptions import RedisError

logger = logging.getLogger("tashooks.worker")


class WakingWorker(Worker):
    """``arq.worker.Worker`` whose poll loop sleeps until woken or ``poll_delay`` passes."""

    def __init__(self, *args: Any, wake_channel: str, redis_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()
        self.wake_channel = wake_channel
        self.redis_url = redis_url
        self.wakeups = 0

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
