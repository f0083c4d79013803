"""Shared fixtures: a real redis-server started by the suite on a free port.

The machine's own Redis on 6379 is never touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tashooks.redisproc import RedisProcess


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """One redis-server for the whole run (AOF on, fsync every second for speed)."""
    server = RedisProcess(appendfsync="everysec").start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The session server's URL, flushed before each test (restarted if a test stopped it)."""
    if not redis_server.ping():
        redis_server.start()
    import redis as syncredis

    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
