"""The worker's own claim / run / finish of arq jobs (handlers.wakeup), with job functions
of the test's: what is claimed, what is removed, what stays queued to run again."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError

from handlers.batch import Batcher
from handlers.wakeup import WakingWorker
from receiver import jobs
from receiver.connection import connect
from receiver.keys import Keys

KEYS = Keys("wk")
ran: list[tuple[str, int]] = []


async def record(ctx: dict[str, Any], name: str) -> None:
    ran.append((name, ctx["job_try"]))


async def redis_fails(ctx: dict[str, Any]) -> None:
    raise RedisConnectionError("Redis went away (test)")


async def forever(ctx: dict[str, Any]) -> None:
    ran.append(("forever", ctx["job_try"]))
    await asyncio.sleep(3600)


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    ran.clear()
    arq = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=jobs.serialize,
        job_deserializer=jobs.deserialize,
        default_queue_name=KEYS.queue,
    )
    yield arq
    await arq.aclose()


@contextlib.asynccontextmanager
async def running(redis_url: str, max_jobs: int = 50) -> AsyncIterator[WakingWorker]:
    worker = WakingWorker(
        functions=[
            func(record),
            func(redis_fails),
            func(forever),
            func(forever, name="slow", timeout=0.3),
        ],
        queue_name=KEYS.queue,
        redis_settings=RedisSettings.from_dsn(redis_url),
        job_serializer=jobs.serialize,
        job_deserializer=jobs.deserialize,
        max_jobs=max_jobs,
        keep_result=0,
        handle_signals=False,
        poll_delay=0.05,
        wake_channel=KEYS.wake,
        redis_url=redis_url,
        batch=Batcher(connect(redis_url, socket_timeout=None)),
    )
    task = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        await stop_jobs(worker)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.batch.redis.aclose()
        await worker.pool.aclose()


async def stop_jobs(worker: WakingWorker) -> None:
    """What a shutdown does: take no more jobs, cancel the running ones."""
    worker.allow_pick_jobs = False
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` (a bool, or an awaitable of one) is true."""
    deadline = time.monotonic() + timeout
    while not (await r if inspect.isawaitable(r := check()) else r):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def queue_empty(redis: aioredis.Redis) -> bool:
    return int(await redis.zcard(KEYS.queue)) == 0


async def test_jobs_behind_ones_running_elsewhere_are_found(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    busy = [f"busy-{i:03d}" for i in range(150)]
    for job_id in busy:  # at the queue's head, each in progress at another worker
        await pool.enqueue_job("record", job_id, _job_id=job_id)
        await redis.set(in_progress_key_prefix + job_id, b"1", px=60_000)
    await asyncio.sleep(0.01)
    free = [f"free-{i:02d}" for i in range(20)]
    for job_id in free:
        await pool.enqueue_job("record", job_id, _job_id=job_id)

    async with running(redis_url, max_jobs=50):
        await until(lambda: len(ran) >= len(free))
        await asyncio.sleep(0.2)
    assert sorted(name for name, _ in ran) == free
    queued = {m.decode() for m in await redis.zrange(KEYS.queue, 0, -1)}
    assert queued == set(busy)  # untouched, still there for the worker that holds them
    for job_id in free:  # finished jobs leave nothing behind
        assert not await redis.exists(
            job_key_prefix + job_id, in_progress_key_prefix + job_id, retry_key_prefix + job_id
        )


async def test_tries_are_counted_and_expired_jobs_removed(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    await pool.enqueue_job("record", "again", _job_id="again")
    await redis.set(retry_key_prefix + "again", 3)  # its worker died three times
    await redis.zadd(KEYS.queue, {"gone": 1})  # queued, but its job data expired
    async with running(redis_url):
        await until(lambda: queue_empty(redis))
    assert ran == [("again", 4)]


async def test_redis_failure_leaves_the_job_to_run_again(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    await pool.enqueue_job("redis_fails", _job_id="rf")
    async with running(redis_url) as worker:
        await until(lambda: worker.jobs_retried == 1)
        assert await redis.zscore(KEYS.queue, "rf") is not None
        assert await redis.exists(job_key_prefix + "rf")
        # Claimed until its claim expires: then a worker runs it again.
        assert await redis.pttl(in_progress_key_prefix + "rf") > 0


async def test_a_job_cancelled_at_shutdown_is_released_for_another_worker(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    await pool.enqueue_job("forever", _job_id="long")
    async with running(redis_url) as worker:
        await until(lambda: bool(ran))
        assert await redis.exists(in_progress_key_prefix + "long")
        await stop_jobs(worker)
        assert worker.jobs_retried == 1
    assert not await redis.exists(in_progress_key_prefix + "long")
    assert await redis.zscore(KEYS.queue, "long") is not None
    assert await redis.exists(job_key_prefix + "long")


async def test_a_job_past_its_timeout_is_stopped_and_removed(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    await pool.enqueue_job("slow", _job_id="slow")
    async with running(redis_url) as worker:
        await until(lambda: worker.jobs_failed == 1, timeout=5.0)
        await until(lambda: queue_empty(redis), timeout=2.0)
        assert worker.jobs_retried == 0
    assert ran == [("forever", 1)]
    assert not await redis.exists(job_key_prefix + "slow", in_progress_key_prefix + "slow")


async def test_a_job_still_running_here_is_not_started_twice(
    redis_url: str, redis: aioredis.Redis, pool: ArqRedis
) -> None:
    await pool.enqueue_job("forever", _job_id="long")
    async with running(redis_url) as worker:
        await until(lambda: bool(ran))
        # Its mark lapses (as when Redis was away longer than the mark lives) ...
        await redis.delete(in_progress_key_prefix + "long")
        worker.wake.set()
        await until(lambda: queue_claimed(redis))
        await asyncio.sleep(0.3)
        # ... the next poll claims it again (renewing the mark), but does not run it again.
        assert ran == [("forever", 1)]
        assert worker.job_counter == 1
        await stop_jobs(worker)


async def queue_claimed(redis: aioredis.Redis) -> bool:
    return bool(await redis.exists(in_progress_key_prefix + "long"))
