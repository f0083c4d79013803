"""Coalesced Redis writes: the commands of concurrent rule runs share one round trip.

A worker runs many jobs at once, and each used to make its own round trips (take the
resource lock, record the run, finish the job). Each of those costs far more in the client
(connection checkout, timeouts, packing, parsing) than in Redis. ``Batcher.execute`` queues
a caller's commands; one pipeline per turn of the event loop sends every queued caller's
commands, in order, and each caller gets its own replies (or its own error). While
pipelines are in flight (at most ``LANES``), new commands wait for the next one, so batches
grow with load.

Scripts go as ``EVAL`` with their source: Redis caches them by hash, and a Redis that lost
its script cache (restarted) needs nothing reloaded.

A batch is written and its replies read on one connection of the client's pool under one
timeout for the whole exchange (redis-py's pipeline arms a timer for every reply, which cost
more than the rest of the exchange); connection errors and that timeout are retried with the
client's retry policy, as its pipelines are. Replies are as Redis sends them (bytes, ints,
lists): no response callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from receiver.connection import pack_command

Command = tuple[Any, ...]
# Pipelines in flight at once (each on its own connection): while Redis answers one, the
# next fills up. A caller's commands all go in one pipeline, and a caller sends its next
# commands only after the replies to its last, so each caller's writes stay in order.
LANES = 2


@dataclass(slots=True)
class _Pending:
    packed: bytes
    count: int
    atomic: bool
    future: asyncio.Future[list[Any]]


def script(source: str, keys: list[str], args: list[Any]) -> Command:
    """An ``EVAL`` command of ``source`` with ``keys`` and ``args``."""
    return ("EVAL", source, len(keys), *keys, *args)


class Batcher:
    """Sends the commands of concurrent callers in one pipeline (not a transaction)."""

    def __init__(self, redis: aioredis.Redis, timeout_s: float = 5.0) -> None:
        self.redis = redis
        self.timeout_s = timeout_s
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._lanes = 0  # flushers running (a lane is free again the moment one returns)
        self._collecting = False  # a flusher will take the pending commands on its next turn
        self.round_trips = 0  # pipelines sent (for tests)

    async def execute(self, *commands: Command, atomic: bool = False) -> list[Any]:
        """Run ``commands`` in order, in a pipeline shared with other callers; their replies.

        ``atomic``: all or none of them (``MULTI``/``EXEC`` around them; a command Redis
        refuses to queue, e.g. when it is out of memory, aborts them all). Raises the first
        error among this caller's replies (other callers' errors are theirs), or the
        connection error that failed the whole pipeline. A value Redis cannot take raises
        ``DataError`` here, before anything is sent.
        """
        if atomic:
            commands = (("MULTI",), *commands, ("EXEC",))
        packed = b"".join([pack_command(command) for command in commands])
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(packed, len(commands), atomic, future))
        if not self._collecting and self._lanes < LANES:
            self._collecting = True
            self._lanes += 1
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            while True:
                await asyncio.sleep(0)  # let every caller that is ready in this turn join
                self._collecting = False
                # A caller that gave up (cancelled) has its commands dropped, not sent.
                batch = [item for item in self._pending if not item.future.done()]
                self._pending = []
                if batch:
                    await self._deliver(batch)
                if not self._pending or self._collecting:
                    return  # nothing left, or another flusher takes it
                self._collecting = True
        finally:
            self._lanes -= 1

    async def _deliver(self, batch: list[_Pending]) -> None:
        try:
            replies = await self._send(batch)
        except (RedisError, OSError) as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except BaseException as exc:  # cancelled: nobody may be left waiting
            error = RedisError(f"batch cancelled: {exc!r}")
            for item in batch + self._pending:
                if not item.future.done():
                    item.future.set_exception(error)
            self._pending = []
            raise
        start = 0
        for item in batch:
            mine = replies[start : start + item.count]
            start += item.count
            if item.atomic and not isinstance(mine[-1], Exception):
                mine = mine[-1]  # EXEC's replies, one per command
            if item.future.done():
                continue
            failed = next((r for r in mine if isinstance(r, Exception)), None)
            if failed is not None:
                item.future.set_exception(failed)
            else:
                item.future.set_result(mine)

    async def _send(self, batch: list[_Pending]) -> list[Any]:
        self.round_trips += 1
        packed = b"".join([item.packed for item in batch])
        count = sum(item.count for item in batch)
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._exchange(conn, packed, count),
                lambda _error: conn.disconnect(),
            )
            return replies
        finally:
            await pool.release(conn)

    async def _exchange(self, conn: Any, packed: bytes, count: int) -> list[Any]:
        replies: list[Any] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                await conn.send_packed_command(packed)
                for _ in range(count):
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:  # this command's error, not the batch's
                        replies.append(exc)
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse it
            raise
        return replies

    async def close(self) -> None:
        """Wait for the batches in flight."""
        with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
            await asyncio.gather(*self._flushers)
