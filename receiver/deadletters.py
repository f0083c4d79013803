"""The dead-letter list: rule runs that failed for good, with their error, kept in Redis.

A hash holds the records (JSON) by id; a sorted set orders them by time of failure. A run
(an event and a rule) has at most one dead letter: a newer failure of the same run (after a
replay, say) replaces the older one, so retrying every dead letter never runs a rule twice
for one event. A third hash maps each run to its dead letter.
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

# KEYS: records, index, runs. ARGV: id, JSON record, time ms, run.
# Returns the id of the dead letter it replaced, or false.
_ADD = """
local old = redis.call('HGET', KEYS[3], ARGV[4])
if old and old ~= ARGV[1] then
  redis.call('HDEL', KEYS[1], old)
  redis.call('ZREM', KEYS[2], old)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
return old or false
"""
# KEYS: records, index, runs. ARGV: id, run. Returns 1 when the dead letter was there.
_REMOVE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return removed
"""


def run_key(event_id: str, rule: str | None) -> str:
    """The run a dead letter is about: ``<event id> <rule>`` (``*``: the event's start)."""
    return f"{event_id} {rule or '*'}"


class DeadLetters:
    """Add, list, read and remove dead letters."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)

    @property
    def _keys(self) -> list[str]:
        return [self.keys.deadletters, self.keys.deadletter_index, self.keys.deadletter_runs]

    async def add(self, record: dict[str, Any]) -> str:
        """Store ``record`` (event, rule, failed step, error, attempts) in place of the
        run's earlier dead letter, if any; return its id."""
        now_ms = int(time.time() * 1000)
        dl_id = "dl_" + new_event_id(now_ms)[4:]
        doc = {"id": dl_id, "failed_at_ms": now_ms, **record}
        run = run_key(str(record["event_id"]), record.get("rule"))
        await self._add(keys=self._keys, args=[dl_id, json.dumps(doc, default=str), now_ms, run])
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
        record = await self.get(dl_id)
        if record is None:
            return False
        run = run_key(str(record.get("event_id")), record.get("rule"))
        return bool(await self._remove(keys=self._keys, args=[dl_id, run]))

    async def of_event(self, event_id: str) -> tuple[str, ...]:
        """The ids of the event's dead letters (one per rule that failed for good)."""
        return tuple(
            [
                dl_id.decode() if isinstance(dl_id, bytes) else str(dl_id)
                async for _, dl_id in self.redis.hscan_iter(
                    self.keys.deadletter_runs, match=f"{event_id} *", count=1000
                )
            ]
        )

    async def purge(self) -> int:
        """Delete every dead letter; return how many there were."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hlen(self.keys.deadletters)
            pipe.delete(*self._keys)
            count, _ = await pipe.execute()
        return int(count)

    async def size(self) -> int:
        """How many dead letters there are."""
        return int(await self.redis.zcard(self.keys.deadletter_index))
