"""The batcher: concurrent callers share one round trip, errors stay with their caller,
and a failed or stalled exchange leaves no broken connection behind."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from handlers.batch import Batcher, script
from receiver.connection import connect
from tashooks.redisproc import RedisProcess


async def test_concurrent_callers_share_one_round_trip(redis_url: str) -> None:
    batch = Batcher(connect(redis_url, socket_timeout=None))
    try:
        replies = await asyncio.gather(
            *(batch.execute(("INCRBY", "n", i), ("GET", "n")) for i in range(1, 51))
        )
        assert batch.round_trips == 1
        # In order: each caller's INCRBY result is the running total, and its GET sees it.
        totals = [r[0] for r in replies]
        assert totals == [sum(range(1, i + 1)) for i in range(1, 51)]
        assert all(r[1] == str(r[0]).encode() for r in replies)
        # A caller that comes while a pipeline is in flight goes in the next one.
        first = asyncio.ensure_future(batch.execute(("PING",)))
        while batch.round_trips < 2:  # until the first batch is on its way
            await asyncio.sleep(0)
        second = await batch.execute(("PING",))
        assert await first == [b"PONG"] and second == [b"PONG"]
        assert batch.round_trips == 3
    finally:
        await batch.redis.aclose()


async def test_an_error_stays_with_its_caller(redis_url: str) -> None:
    batch = Batcher(connect(redis_url, socket_timeout=None))
    try:
        await batch.execute(("SET", "text", "abc"))
        bad, good = await asyncio.gather(
            batch.execute(("SET", "before", "1"), ("INCR", "text")),
            batch.execute(("INCR", "counter")),
            return_exceptions=True,
        )
        assert isinstance(bad, ResponseError) and "not an integer" in str(bad)
        assert good == [1]
        # Commands before the failing one ran (a batch is not a transaction).
        assert (await batch.execute(("GET", "before"))) == [b"1"]
        [result] = await batch.execute(script("return ARGV[1] .. KEYS[1]", ["k"], ["v"]))
        assert result == b"vk"
    finally:
        await batch.redis.aclose()


async def test_a_stalled_redis_times_out_and_the_connection_is_not_reused(
    redis_url: str, redis: aioredis.Redis
) -> None:
    batch = Batcher(connect(redis_url, socket_timeout=None), timeout_s=0.3)
    try:
        assert await batch.execute(("PING",)) == [b"PONG"]
        await redis.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        with pytest.raises(TimeoutError):
            await batch.execute(("INCR", "stalled"))
        await asyncio.sleep(1.0)
        # A fresh connection: no reply of the stalled exchange is read as this one's.
        assert await batch.execute(("SET", "after", "1"), ("GET", "after")) == [b"OK", b"1"]
    finally:
        await batch.redis.aclose()


async def test_redis_down_fails_callers_then_recovers(tmp_path: object) -> None:
    server = RedisProcess().start()
    batch = Batcher(connect(server.url, socket_timeout=None))
    try:
        assert await batch.execute(("PING",)) == [b"PONG"]
        server.stop()
        results = await asyncio.gather(
            batch.execute(("PING",)), batch.execute(("PING",)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results
        server.start()
        assert await batch.execute(("PING",)) == [b"PONG"]
    finally:
        await batch.redis.aclose()
        server.close()
