"""The batcher: concurrent callers share one round trip, errors stay with their caller,
and a failed or stalled exchange leaves no broken connection behind."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

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


async def test_atomic_commands_apply_all_or_none(redis_url: str) -> None:
    batch = Batcher(connect(redis_url, socket_timeout=None))
    try:
        # Refused while queuing (wrong number of arguments): nothing of it is applied.
        with pytest.raises(ResponseError):
            await batch.execute(("SET", "a", "1"), ("INCR",), atomic=True)
        assert await batch.execute(("EXISTS", "a")) == [0]
        # Applied: the replies of the commands, not MULTI's and EXEC's.
        assert await batch.execute(("SET", "a", "1"), ("INCR", "a"), atomic=True) == [b"OK", 2]
        # An error while running (Redis runs the others): raised to the caller.
        await batch.execute(("SET", "text", "abc"))
        with pytest.raises(ResponseError):
            await batch.execute(("INCR", "text"), ("INCR", "a"), atomic=True)
        assert await batch.execute(("GET", "a")) == [b"3"]
    finally:
        await batch.redis.aclose()


async def test_a_value_redis_cannot_take_fails_only_its_caller(redis_url: str) -> None:
    batch = Batcher(connect(redis_url, socket_timeout=None))
    try:
        good = asyncio.ensure_future(batch.execute(("SET", "k", "v")))
        with pytest.raises(DataError):
            await batch.execute(("SET", "k2", None))  # type: ignore[arg-type]
        assert await good == [b"OK"]
    finally:
        await batch.redis.aclose()


async def test_callers_that_follow_each_other_are_never_left_waiting(redis_url: str) -> None:
    """Callers that send again as soon as they have their replies, in waves that end
    together: every command is sent (none waits for a lane that has just finished)."""
    batch = Batcher(connect(redis_url, socket_timeout=None))

    async def caller(n: int) -> None:
        for i in range(30):
            await asyncio.wait_for(batch.execute(("INCR", f"c{n}")), 5.0)
            if i % (n % 3 + 1) == 0:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(caller(n) for n in range(40)))
        values = await batch.execute(*(("GET", f"c{n}") for n in range(40)))
        assert values == [b"30"] * 40
    finally:
        await batch.redis.aclose()


async def test_the_lock_script_gives_the_same_answer_when_sent_again(redis_url: str) -> None:
    from handlers.ordering import _LOCK_AND_ADVANCE

    batch = Batcher(connect(redis_url, socket_timeout=None))
    keys = ["r:lock", "r:last"]
    try:
        first = await batch.execute(script(_LOCK_AND_ADVANCE, keys, [100, 60_000, "t1", 15_000]))
        again = await batch.execute(script(_LOCK_AND_ADVANCE, keys, [100, 60_000, "t1", 15_000]))
        other = await batch.execute(script(_LOCK_AND_ADVANCE, keys, [200, 60_000, "t2", 15_000]))
        assert (first, again, other) == ([0], [0], [-1])
        await batch.execute(("DEL", "r:lock"))
        older = await batch.execute(script(_LOCK_AND_ADVANCE, keys, [50, 60_000, "t3", 15_000]))
        older_again = await batch.execute(
            script(_LOCK_AND_ADVANCE, keys, [50, 60_000, "t3", 15_000])
        )
        assert older == older_again == [1]  # stale, both times
    finally:
        await batch.redis.aclose()


async def test_a_lane_that_just_finished_is_free_at_once(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """Two pipelines answered together; one caller sends again at once while the other
    does not: its commands must still go out (not wait for a lane that has finished)."""
    batch = Batcher(connect(redis_url, socket_timeout=None))

    async def follow() -> list[object]:
        await batch.execute(("PING",))
        return await asyncio.wait_for(batch.execute(("INCR", "n")), 3.0)

    try:
        for follower_first in (True, False, True, False):
            await redis.execute_command("CLIENT", "PAUSE", 200, "ALL")
            sent = batch.round_trips
            tasks: list[asyncio.Future[list[object]]] = []
            for follows in (follower_first, not follower_first):
                tasks.append(
                    asyncio.ensure_future(follow() if follows else batch.execute(("PING",)))
                )
                while batch.round_trips == sent:  # this lane is on its way, held by the pause
                    await asyncio.sleep(0)
                sent = batch.round_trips
            replies = await asyncio.gather(*tasks)
            assert [b"PONG"] in replies
    finally:
        await batch.redis.aclose()
