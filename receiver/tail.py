"""Following the audit stream live (``GET /events/stream``, ``tashooks events --follow``).

``Tail`` reads with ``XREAD BLOCK`` after the last id it has seen, so a reader that
reconnects with that id (SSE's ``Last-Event-ID``) misses nothing and sees nothing twice.
The blocking read ties up its connection: give a ``Tail`` a Redis client of its own.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import redis.asyncio as aioredis

from receiver.keys import Keys
from receiver.records import decode_entry, text

# Entries read per round trip; event types remembered for filtering runs and steps.
COUNT = 100
_CACHE_SIZE = 10_000


class Tail:
    """New audit records after ``after`` (a stream id; None: from now on), optionally only
    those about events of a type glob and/or a resource.

    Run and step records do not carry the event's type or resource: they are looked up in
    the event's hash (and remembered). Records that are about no event (``rejected``) are
    left out when a filter is given.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        after: str | None = None,
        type_glob: str | None = None,
        resource: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.last_id = after
        self.type_glob = type_glob
        self.resource = resource
        self._about: dict[str, tuple[str, str]] = {}
        # The given starting point was after the newest entry (an id from before Redis lost
        # its data, or made up): following from it would wait, silently, for ids to catch up.
        self.ahead = False

    async def start(self, *, resume: bool = False) -> str:
        """Fix the starting point (the newest entry now, when none was given); return it.
        With ``resume`` (the given point is the last record a client saw) a point ahead of
        the stream is replaced by the newest entry too, and ``ahead`` is set.

        Reading from ``$`` each time would lose entries written between two reads.
        """
        if self.last_id is not None and not resume:
            return self.last_id
        newest = await self.redis.xrevrange(self.keys.audit, "+", "-", count=1)
        newest_id = text(newest[0][0]) if newest else "0-0"
        if self.last_id is None or _order(self.last_id) > _order(newest_id):
            self.ahead = self.last_id is not None
            self.last_id = newest_id
        return self.last_id

    async def read(self, block_ms: int) -> list[dict[str, Any]]:
        """The next records (decoded, see ``receiver.records``); waits up to ``block_ms``
        for one and returns [] when none came."""
        after = self.last_id or await self.start()
        reply = await self.redis.xread({self.keys.audit: after}, count=COUNT, block=block_ms)
        if not reply:
            return []
        [(_, entries)] = reply
        records = [decode_entry(sid, fields) for sid, fields in entries]
        if records:
            self.last_id = records[-1]["stream_id"]
        if self.type_glob is None and self.resource is None:
            return records
        return [r for r in records if await self._wanted(r)]

    async def _wanted(self, record: dict[str, Any]) -> bool:
        event_id = record.get("id")
        if not isinstance(event_id, str):
            return False
        if "type" in record and "resource" in record:
            about = (str(record["type"]), str(record["resource"]))
        else:
            about = await self._lookup(event_id)
        event_type, resource = about
        if self.type_glob is not None and not fnmatchcase(event_type, self.type_glob):
            return False
        return self.resource is None or resource == self.resource

    async def _lookup(self, event_id: str) -> tuple[str, str]:
        known = self._about.get(event_id)
        if known is not None:
            return known
        event_type, resource = await self.redis.hmget(  # type: ignore[misc]
            self.keys.event(event_id), ["type", "resource"]
        )
        about = (text(event_type), text(resource))
        if len(self._about) >= _CACHE_SIZE:
            self._about.clear()
        self._about[event_id] = about
        return about


def _order(stream_id: str) -> tuple[int, int]:
    """A stream id (``<ms>-<seq>``) as a sortable pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
