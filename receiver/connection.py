"""Redis connections.

The receiver fails fast (an unreachable Redis is a 503 at once, not a hang); the worker
rides out short outages by retrying each command with backoff for ``retry_s`` seconds.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    DataError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RETRY_ERRORS: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError, OSError]
# Error replies that mean Redis cannot serve now (rather than a command we got wrong).
_TROUBLE_CLASSES = (
    ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
    ClusterDownError,
    TryAgainError,
    NoPermissionError,
)
_TROUBLE_CODES = ("MISCONF", "BUSY", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")


def storage_trouble(exc: BaseException) -> bool:
    """True when ``exc`` says Redis is unreachable or cannot serve now (a 503: retry later);
    False for an error reply to a command that is wrong (a bug: it would fail again)."""
    if not isinstance(exc, ResponseError):
        return True
    return isinstance(exc, _TROUBLE_CLASSES) or str(exc).startswith(_TROUBLE_CODES)


def retry_policy(retry_s: float) -> Retry:
    """Retries with exponential backoff (50 ms doubling, at most 1 s) for about ``retry_s``."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=max(1, int(retry_s) + 5))


class _HiredisPacking:
    """Packs commands with hiredis (C) instead of redis-py's packer (Python): the same
    bytes on the wire at a fraction of the cost, which matters at thousands of commands a
    second (the sync client does this already; the asyncio one does not)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [pack_command(args)]

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join([pack_command(tuple(command)) for command in commands])]


def pack_command(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (``DataError`` for a value Redis cannot take)."""
    first = args[0]
    # 'CONFIG GET' and such: one argument per word
    if (" " in first) if isinstance(first, str) else (b" " in first):
        args = (*first.split(), *args[1:])
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError as exc:
        raise DataError(str(exc)) from exc
    return packed


_PACKING: dict[type, type] = {}


def _hiredis_packing(cls: type) -> type:
    if cls not in _PACKING:
        _PACKING[cls] = type(cls.__name__, (_HiredisPacking, cls), {})
    return _PACKING[cls]


def connect(
    url: str,
    *,
    max_connections: int = 64,
    retry_s: float = 0.0,
    socket_timeout: float | None = 5.0,
) -> aioredis.Redis:
    """A Redis client for ``url`` (no I/O yet). With ``retry_s`` > 0, commands are retried
    through connection errors for about that long. ``socket_timeout=None``: no timeout per
    reply (for a caller that bounds whole exchanges itself, like ``handlers.batch``)."""
    extra: dict[str, Any] = {}
    if retry_s > 0:
        extra = {"retry": retry_policy(retry_s), "retry_on_error": RETRY_ERRORS}
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        max_connections=max_connections,
        **extra,
    )
    pool = client.connection_pool
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return client
