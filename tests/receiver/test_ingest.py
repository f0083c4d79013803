"""The ingestor's batching: concurrent deliveries share round trips, and a second batch
leaves while one is out (so the receiver reads requests while Redis runs a script)."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis

from receiver.events import parse_event
from receiver.ingest import MAX_IN_FLIGHT, MIN_PIPELINED, Ingestor, Stored
from receiver.keys import Keys
from tests.receiver.conftest import make_body


def _events(prefix: str, n: int) -> list[bytes]:
    return [make_body(id=f"vps_{prefix}{i}") for i in range(n)]


async def _settle() -> None:
    await asyncio.sleep(0.05)  # flushers take their batch and send it


async def test_a_second_batch_leaves_while_one_is_out(redis: aioredis.Redis) -> None:
    keys = Keys(f"ingest{secrets.token_hex(3)}")
    ingestor = Ingestor(redis, keys, 3600)
    size = MIN_PIPELINED + 4
    # Writes wait while Redis is paused: each batch sent stays out until it is unpaused.
    await redis.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        stores: list[asyncio.Task[Stored]] = []
        for round_ in range(MAX_IN_FLIGHT + 1):
            stores += [
                asyncio.create_task(ingestor.store(parse_event(b)))
                for b in _events(f"r{round_}_", size)
            ]
            await _settle()
            # One batch per round until MAX_IN_FLIGHT are out; then the rest waits.
            assert ingestor.batches == min(round_ + 1, MAX_IN_FLIGHT)
        # Fewer than MIN_PIPELINED more do not make another batch either.
        stores += [asyncio.create_task(ingestor.store(parse_event(b))) for b in _events("x", 3)]
        await _settle()
        assert ingestor.batches == MAX_IN_FLIGHT
        assert not any(task.done() for task in stores)  # nothing acknowledged before Redis
        closing = asyncio.create_task(ingestor.close())
        await _settle()
        assert not closing.done()  # close waits for every batch out and every one pending
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    results = await asyncio.wait_for(asyncio.gather(*stores), 10)
    await asyncio.wait_for(closing, 10)
    assert all(r.new for r in results)
    assert len({r.id for r in results}) == len(stores)
    # The rest left together once a batch came back.
    assert ingestor.batches == MAX_IN_FLIGHT + 1
    assert await redis.zcard(keys.queue) == len(stores)


async def test_a_lone_delivery_does_not_wait_for_company(redis: aioredis.Redis) -> None:
    ingestor = Ingestor(redis, Keys(f"ingest{secrets.token_hex(3)}"), 3600)
    [body] = _events("lone", 1)
    stored = await asyncio.wait_for(ingestor.store(parse_event(body)), 2)
    assert stored.new and ingestor.batches == 1
    again = await ingestor.store(parse_event(body))
    assert (again.new, again.id) == (False, stored.id)
    await ingestor.close()


async def test_a_window_longer_than_the_epoch_still_stores(redis: aioredis.Redis) -> None:
    """The audit stream's MINID (now - window) is never negative: XADD would refuse it after
    the script had written the dedup key, the job and the queue entry (no rollback)."""
    keys = Keys(f"ingest{secrets.token_hex(3)}")
    ingestor = Ingestor(redis, keys, 36500 * 86400.0)
    try:
        stored = await ingestor.store(parse_event(make_body(id="vps_long")))
    finally:
        await ingestor.close()
    assert stored.new
    assert await redis.zrange(keys.queue, 0, -1) == [stored.id.encode()]
    assert len(await redis.xrange(keys.audit)) == 1
