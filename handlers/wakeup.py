"""An arq worker that wakes when work arrives, claims jobs in batches and runs them lean.

arq polls its queue every ``poll_delay``; a short delay means low latency but a busy idle
worker. Here the receiver publishes on ``<namespace>:wake`` after it queued deliveries
(inside its ingest script), and a subscriber wakes the worker's loop at once; the poll delay
is only the fallback (and what picks up deferred jobs). The loop also wakes when one of its
own jobs ends, so queued work never waits for the next poll while a slot is free.

arq reads the queue's head, then claims and reads each job with round trips of its own
(``WATCH``/``MULTI`` to claim, a transaction to read, another to finish), and every worker
reads the same head. Here one script per poll finds the due jobs that nobody runs, claims
as many as there are free slots and returns their data and try counts; finished jobs are
removed through the shared ``Batcher``. The keys are arq's (queue, job, in-progress, retry),
so jobs enqueued with arq's ``enqueue_job`` run here unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import ms_to_datetime
from arq.worker import Worker
from redis.exceptions import RedisError

from handlers.batch import Batcher, Command, script

logger = logging.getLogger("tashooks.worker")

# Find due jobs that are not in progress anywhere and claim up to ARGV[6] of them: mark
# them in progress, count the try, return id, score, job data (nil when it expired), try.
# Scans at most ARGV[7] due entries, so a worker finds work behind jobs other workers run.
# KEYS[1]: the queue. ARGV: now ms, in-progress prefix, claim ttl ms, retry prefix,
# job prefix, how many, scan limit.
_CLAIM = """
local out = {}
local want = tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local claimed, offset = 0, 0
while claimed < want and offset < limit do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES',
    'LIMIT', offset, 100)
  if #due == 0 then break end
  for i = 1, #due, 2 do
    local id = due[i]
    local busy = ARGV[2] .. id
    if redis.call('EXISTS', busy) == 0 then
      redis.call('SET', busy, '1', 'PX', ARGV[3])
      local tries = redis.call('INCR', ARGV[4] .. id)
      redis.call('EXPIRE', ARGV[4] .. id, 88400)
      out[#out + 1] = id
      out[#out + 1] = due[i + 1]
      out[#out + 1] = redis.call('GET', ARGV[5] .. id)
      out[#out + 1] = tries
      claimed = claimed + 1
      if claimed >= want then break end
    end
  end
  offset = offset + 100
end
return out
"""
SCAN_LIMIT = 2000
WATCHDOG_S = 1.0


class WakingWorker(Worker):
    """``arq.worker.Worker`` whose poll loop sleeps until woken or ``poll_delay`` passes,
    and which claims, runs and finishes jobs with few round trips."""

    def __init__(
        self, *args: Any, wake_channel: str, redis_url: str, batch: Batcher, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()
        self.wake_channel = wake_channel
        self.redis_url = redis_url
        self.wakeups = 0
        # Claims, job removals and the jobs' own writes share its pipelines.
        self.batch = batch
        self._deadlines: dict[str, float] = {}  # job id -> loop time it must end by
        self._timed_out: set[str] = set()

    async def _poll_iteration(self) -> None:
        free = self.max_jobs - self.job_counter
        if self.allow_pick_jobs and free > 0:
            [claimed] = await self.batch.execute(
                script(
                    _CLAIM,
                    [self.queue_name],
                    [
                        int(time.time() * 1000),
                        in_progress_key_prefix,
                        int(self.in_progress_timeout_s * 1000),
                        retry_key_prefix,
                        job_key_prefix,
                        free,
                        SCAN_LIMIT,
                    ],
                )
            )
            for i in range(0, len(claimed), 4):
                job_id = claimed[i].decode()
                running = self.tasks.get(job_id)
                if running is not None and not running.done():
                    # Still running here, its mark lapsed (Redis was away longer than the
                    # mark lives): the claim renewed the mark; one run is enough.
                    continue
                await self.sem.acquire()
                self.job_counter += 1
                task = self.loop.create_task(
                    self._run(job_id, int(float(claimed[i + 1])), claimed[i + 2], claimed[i + 3])
                )
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()  # _run never raises: a failure here is a bug worth surfacing
        await self.heart_beat()

    async def _run(self, job_id: str, score: int, raw: bytes | None, job_try: int) -> None:
        """Run one claimed job; remove it from the queue unless it must run again. Never
        raises (arq's loop and ``close`` gather these tasks)."""
        try:
            await self._run_job(job_id, score, raw, job_try)
        except asyncio.CancelledError:
            # Shutting down while the job was being removed: if the removal did not reach
            # Redis, the job runs again (its finished steps are not repeated).
            logger.info("job %s: stopped while being removed from the queue", job_id)

    async def _run_job(self, job_id: str, score: int, raw: bytes | None, job_try: int) -> None:
        if raw is None:
            logger.warning("job %s expired before it ran; removed from the queue", job_id)
            self.jobs_failed += 1
            return await asyncio.shield(self._finish(job_id))
        try:
            name, args, kwargs, enqueue_try, enqueue_ms = deserialize_job_raw(
                raw, deserializer=self.job_deserializer
            )
            function = self.functions[name]
        except (SerializationError, KeyError) as exc:
            logger.error("job %s cannot run (%s); removed from the queue", job_id, exc)
            self.jobs_failed += 1
            return await asyncio.shield(self._finish(job_id))
        job_try = max(job_try, enqueue_try or 0)
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            logger.error("job %s tried %d times; removed from the queue", job_id, job_try)
            self.jobs_failed += 1
            return await asyncio.shield(self._finish(job_id))
        removed = False

        def finish(status: str) -> list[Command]:
            """The job's removal, for the function's last write to carry (one round trip
            fewer); not for a deferred run: its new job is queued after that write."""
            nonlocal removed
            if status == "deferred":
                return []
            removed = True
            return self._finish_commands(job_id)

        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_ms),
            "score": score,
            "finish": finish,
        }
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        # Enforced by the watchdog (a timer per job costs more than the job's own work).
        self._deadlines[job_id] = self.loop.time() + timeout_s
        try:
            await function.coroutine(ctx, *args, **kwargs)
        except asyncio.CancelledError:
            if job_id not in self._timed_out:
                # Shutting down: let another worker (or this one, restarted) run it again now.
                logger.info("job %s cancelled; it will run again", job_id)
                self.jobs_retried += 1
                await asyncio.shield(self._release(job_id))
                return None
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            logger.error("job %s timed out after %gs; removed from the queue", job_id, timeout_s)
            self.jobs_failed += 1
        except (RedisError, OSError) as exc:
            # Redis failed beyond the client's retries: the claim expires and the job runs
            # again (finished steps are not repeated).
            logger.error("job %s stopped, Redis failed (%s); it will run again", job_id, exc)
            self.jobs_retried += 1
            return None
        except Exception:
            logger.exception("job %s failed; removed from the queue", job_id)
            self.jobs_failed += 1
        else:
            self.jobs_complete += 1
            if removed:  # by the function's last write
                return None
        finally:
            self._deadlines.pop(job_id, None)
            self._timed_out.discard(job_id)
        return await asyncio.shield(self._finish(job_id))

    async def _watchdog(self) -> None:
        """Cancel jobs that run past their timeout (``job_timeout``, or the function's)."""
        while True:
            await asyncio.sleep(WATCHDOG_S)
            now = self.loop.time()
            for job_id, deadline in list(self._deadlines.items()):
                task = self.tasks.get(job_id)
                if now > deadline and task is not None and not task.done():
                    self._timed_out.add(job_id)
                    task.cancel()

    def _finish_commands(self, job_id: str) -> list[Command]:
        """Remove a job that ran (or cannot run) from the queue, with its keys."""
        return [
            ("ZREM", self.queue_name, job_id),
            (
                "DEL",
                in_progress_key_prefix + job_id,
                retry_key_prefix + job_id,
                job_key_prefix + job_id,
            ),
        ]

    async def _finish(self, job_id: str) -> None:
        try:
            await self.batch.execute(*self._finish_commands(job_id))
        except (RedisError, OSError) as exc:
            logger.error(
                "job %s ran, but Redis failed to remove it (%s); it may run again", job_id, exc
            )

    async def _release(self, job_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.batch.execute(("DEL", in_progress_key_prefix + job_id))

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
        helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._watchdog())]
        try:
            while True:
                # Cleared before looking, so work published while we look is not missed.
                self.wake.clear()
                await self._poll_iteration()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_delay_s)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
