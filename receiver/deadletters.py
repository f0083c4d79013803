"""The dead-letter list: rule runs that failed for good, with their error, kept in Redis.

A hash holds the records (JSON) by id; a sorted set orders them by time of failure.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from receiver.events import id_time_ms, new_event_id
from receiver.exceptions import InvalidQuery
from receiver.keys import Keys

Records = list[dict[str, Any]]


class DeadLetters:
    """Add, list, read and remove dead letters."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def add(self, record: dict[str, Any]) -> str:
        """Store ``record`` (event, rule, failed step, error, attempts); return its id."""
        now_ms = int(time.time() * 1000)
        dl_id = "dl_" + new_event_id(now_ms)[4:]
        doc = {"id": dl_id, "failed_at_ms": now_ms, **record}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.deadletters, dl_id, json.dumps(doc, default=str))
            pipe.zadd(self.keys.deadletter_index, {dl_id: now_ms})
            await pipe.execute()
        return dl_id

    async def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` dead letters, newest first."""
        ids = await self.redis.zrevrange(self.keys.deadletter_index, 0, limit - 1)
        if not ids:
            return []
        raw: list[bytes | None] = await self.redis.hmget(  # type: ignore[misc]
            self.keys.deadletters, ids
        )
        return [json.loads(r) for r in raw if r is not None]

    async def page(self, limit: int, cursor: str | None = None) -> tuple[Records, str | None]:
        """Up to ``limit`` dead letters older than ``cursor`` (a dead-letter id; None: the
        newest), newest first, and the cursor of the next page (None: no more)."""
        if cursor is None:
            ids = await self.redis.zrevrange(self.keys.deadletter_index, 0, limit)
        else:
            ms = id_time_ms(cursor)
            if ms is None:
                raise InvalidQuery("cursor", f"{cursor!r} is not a dead-letter id")
            # Same-millisecond ids first (a sorted set orders equal scores by member),
            # then everything older.
            same = await self.redis.zrangebyscore(self.keys.deadletter_index, ms, ms)
            older = await self.redis.zrevrangebyscore(
                self.keys.deadletter_index, f"({ms}", "-inf", start=0, num=limit + 1
            )
            ids = sorted((m for m in same if m.decode() < cursor), reverse=True) + older
        more = len(ids) > limit
        ids = ids[:limit]
        if not ids:
            return [], None
        raw: list[bytes | None] = await self.redis.hmget(  # type: ignore[misc]
            self.keys.deadletters, ids
        )
        records = [json.loads(r) for r in raw if r is not None]
        return records, (ids[-1].decode() if more else None)

    async def get(self, dl_id: str) -> dict[str, Any] | None:
        """One dead letter by id, or None."""
        raw: bytes | None = await self.redis.hget(self.keys.deadletters, dl_id)  # type: ignore[misc]
        return json.loads(raw) if raw is not None else None

    async def remove(self, dl_id: str) -> bool:
        """Delete one dead letter; False when there was none with that id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.deadletters, dl_id)
            pipe.zrem(self.keys.deadletter_index, dl_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def purge(self) -> int:
        """Delete every dead letter; return how many there were."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hlen(self.keys.deadletters)
            pipe.delete(self.keys.deadletters, self.keys.deadletter_index)
            count, _ = await pipe.execute()
        return int(count)

    async def size(self) -> int:
        """How many dead letters there are."""
        return int(await self.redis.zcard(self.keys.deadletter_index))
