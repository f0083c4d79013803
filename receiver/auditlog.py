"""Reading the audit stream: events listed with filters and pages, one event with its
runs. The admin API and the CLI both read through here.

An event is its ``delivery`` record in the stream plus the event's hash (``Keys.event``),
which keeps the latest run of each rule and the id of the newest job queued for it. Pages
run newest first; the cursor is the stream id of the last entry looked at, so a page never
repeats or skips an entry however many arrive meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from receiver.keys import Keys
from receiver.query import STREAM_START, EventQuery
from receiver.records import decode_entry, iso_ms, outcome, runs_of, stream_id_ms, text

# Stream entries read per round trip, and at most per page: a narrow filter over a long
# stream returns a short page with a cursor rather than scanning a week in one request.
BATCH = 200
MAX_SCAN = 10_000


@dataclass
class Page:
    """One page of a listing; ``next_cursor`` is None when nothing older is left."""

    data: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """A listing item of a ``delivery`` or ``rejected`` stream record (status added later)."""
    if record["kind"] == "rejected":
        item = {
            "stream_id": record["stream_id"],
            "received_at": record["at"],
            "delivery": "rejected",
            "status": "rejected",
            "reason": record.get("reason"),
            "source": record.get("source"),
            "count": record.get("count"),
        }
        for name in ("first_ms", "last_ms"):
            if isinstance(record.get(name), int):
                item[name.replace("_ms", "_at")] = iso_ms(record[name])
        return item
    delivery = str(record.get("status", ""))
    return {
        "id": record.get("id"),
        "stream_id": record["stream_id"],
        "received_at": record["at"],
        "type": record.get("type"),
        "resource": record.get("resource") or None,
        "source": record.get("source") or None,
        "delivery": delivery,
        "status": "duplicate" if delivery == "duplicate" else "pending",
        "rules": {},
    }


class AuditLog:
    """Queries over the audit stream and the events' hashes."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def _hashes(self, event_ids: list[str]) -> list[tuple[dict[bytes, bytes], bool]]:
        """Each event's hash and whether one of its jobs is queued or running."""
        if not event_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hgetall(self.keys.event(event_id))
                pipe.exists(self.keys.job(event_id))
            replies = await pipe.execute()
        hashes: list[dict[bytes, bytes]] = replies[0::2]
        pending = [bool(n) for n in replies[1::2]]
        later = [(i, text(h[b"job"])) for i, h in enumerate(hashes) if b"job" in h]
        if later:
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, job_id in later:
                    pipe.exists(self.keys.job(job_id))
                for (i, _), exists in zip(later, await pipe.execute(), strict=True):
                    pending[i] = pending[i] or bool(exists)
        return list(zip(hashes, pending, strict=True))

    async def _complete(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the status and rules of accepted deliveries; drop those whose hash is
        gone (older than the retention window: the stream is trimmed approximately)."""
        accepted = [item for item in items if item["delivery"] == "accepted"]
        gone: set[int] = set()
        hashes = await self._hashes([str(item["id"]) for item in accepted])
        for item, (event_hash, pending) in zip(accepted, hashes, strict=True):
            if b"stream" not in event_hash:
                gone.add(id(item))
                continue
            runs = runs_of(event_hash)
            item["rules"] = {str(r.get("rule")): str(r.get("status")) for r in runs}
            item["status"] = outcome({str(r.get("status")) for r in runs}, pending)
        return [item for item in items if id(item) not in gone]

    async def list_events(self, query: EventQuery) -> Page:
        """Events matching ``query``, newest first, at most ``query.limit`` of them.

        A page may hold fewer items while ``next_cursor`` is set (the filter is narrow and
        ``MAX_SCAN`` entries were looked at): follow the cursor until it is None.
        """
        if query.cursor == STREAM_START:
            return Page()  # nothing is older than the very start
        high = f"({query.cursor}" if query.cursor else "+"
        if query.until_ms is not None and not query.cursor:
            high = str(query.until_ms)
        low = str(query.since_ms) if query.since_ms is not None else "-"
        page = Page()
        scanned = 0
        while True:
            batch = await self.redis.xrevrange(self.keys.audit, high, low, count=BATCH)
            if not batch:
                return page
            scanned += len(batch)
            records = [decode_entry(sid, fields) for sid, fields in batch]
            candidates = [_summary(r) for r in records if query.matches_record(r)]
            if query.until_ms is not None:
                until = query.until_ms
                candidates = [c for c in candidates if stream_id_ms(c["stream_id"]) <= until]
            for item in await self._complete(candidates):
                if not query.matches_status(item):
                    continue
                page.data.append(item)
                if len(page.data) == query.limit:
                    page.next_cursor = item["stream_id"]
                    return page
            last = text(batch[-1][0])
            if len(batch) < BATCH:
                return page
            if scanned >= MAX_SCAN:
                page.next_cursor = last
                return page
            high = f"({last}"

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        """The event (its delivery record, body included) and its rule runs, or None when
        there is no such event within the retention window."""
        [(event_hash, pending)] = await self._hashes([event_id])
        if b"stream" not in event_hash:
            return None
        stream_id = text(event_hash[b"stream"])
        entries = await self.redis.xrange(self.keys.audit, stream_id, stream_id, count=1)
        record = decode_entry(*entries[0]) if entries else {}
        runs = runs_of(event_hash)
        received_ms = int(text(event_hash.get(b"received_ms")) or 0)
        return {
            "id": event_id,
            "stream_id": stream_id,
            # The stream entry's time, as the event list shows it (the hash's received_ms is
            # the receiver's clock, which may be a millisecond apart).
            "received_at": record.get("at") or iso_ms(received_ms),
            "type": text(event_hash.get(b"type")),
            "resource": text(event_hash.get(b"resource")) or None,
            "source": record.get("source") or None,
            "delivery": "accepted",
            "status": outcome({str(r.get("status")) for r in runs}, pending),
            "replays": int(text(event_hash.get(b"replays")) or 0),
            "event": record.get("event"),
            "runs": runs,
        }

    async def event_raw(self, event_id: str) -> tuple[dict[str, Any], int] | None:
        """The delivered event (its JSON object) and when it was received (ms), or None."""
        stream_id, received = await self.redis.hmget(  # type: ignore[misc]
            self.keys.event(event_id), ["stream", "received_ms"]
        )
        if stream_id is None:
            return None
        sid = text(stream_id)
        entries = await self.redis.xrange(self.keys.audit, sid, sid, count=1)
        if not entries:
            return None
        body = entries[0][1].get(b"event")
        if body is None:
            return None
        return json.loads(body), int(text(received) or 0)
