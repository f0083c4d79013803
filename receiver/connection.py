"""Redis connections.

The receiver fails fast (an unreachable Redis is a 503 at once, not a hang); the worker
rides out short outages by retrying each command with backoff for ``retry_s`` seconds.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RETRY_ERRORS: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError, OSError]


def retry_policy(retry_s: float) -> Retry:
    """Retries with exponential backoff (50 ms doubling, at most 1 s) for about ``retry_s``."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=max(1, int(retry_s) + 5))


def connect(url: str, *, max_connections: int = 64, retry_s: float = 0.0) -> aioredis.Redis:
    """A Redis client for ``url`` (no I/O yet). With ``retry_s`` > 0, commands are retried
    through connection errors for about that long."""
    extra: dict[str, Any] = {}
    if retry_s > 0:
        extra = {"retry": retry_policy(retry_s), "retry_on_error": RETRY_ERRORS}
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        max_connections=max_connections,
        **extra,
    )
    return client
