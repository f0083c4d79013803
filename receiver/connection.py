"""Redis connections with short timeouts, so an unreachable Redis is an error, not a hang."""

from __future__ import annotations

import redis.asyncio as aioredis


def connect(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A Redis client for ``url`` (no I/O yet) that fails fast when Redis is away."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        max_connections=max_connections,
    )
    return client
