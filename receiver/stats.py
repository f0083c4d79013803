"""Counts over time from the audit stream (``GET /stats``, the dashboard's chart).

Deliveries (``accepted``, ``duplicate``, ``rejected``) and rule runs by outcome (``ok``,
``failed``, ...), per bucket of ``bucket`` seconds aligned to the epoch (a one-minute bucket
starts on the minute), from ``since`` to ``until``. Each entry counts in the bucket of its
stream id's time; a ``rejected`` record stands for ``count`` refused deliveries.

The stream is read newest first, at most ``MAX_SCAN`` entries a request: when the window
holds more, ``truncated`` is true and ``scanned_from`` says where the counts begin (older
buckets are short), so a busy installation still answers quickly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from receiver.durations import format_duration, parse_duration
from receiver.exceptions import InvalidQuery
from receiver.keys import Keys
from receiver.query import parse_time
from receiver.records import iso_ms, stream_id_ms, text

DELIVERY_SERIES = ("accepted", "duplicate", "rejected")
RUN_SERIES = ("ok", "failed", "deferred", "throttled", "stale", "no_match")
DEFAULT_BUCKET = "1m"
DEFAULT_SINCE = "1h"
MIN_BUCKET_S = 1.0
MAX_BUCKETS = 1500  # a day of one-minute buckets, aligned, fits
MAX_SCAN = 50_000
BATCH = 1000


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Which window to count and in which buckets (all in ms)."""

    bucket_ms: int
    since_ms: int
    until_ms: int

    @classmethod
    def parse(
        cls,
        *,
        bucket: str | None = None,
        since: str | None = None,
        until: str | None = None,
        now_ms: int | None = None,
    ) -> StatsQuery:
        """From the query string's text values (any may be None); raises ``InvalidQuery``."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            bucket_s = parse_duration(bucket or DEFAULT_BUCKET)
        except ValueError as exc:
            raise InvalidQuery("bucket", str(exc)) from None
        if bucket_s < MIN_BUCKET_S:
            raise InvalidQuery("bucket", "bucket must be at least 1s")
        since_ms = parse_time(since or DEFAULT_SINCE, "since", now_ms)
        until_ms = parse_time(until, "until", now_ms) if until else now_ms
        if since_ms > until_ms:
            if since:
                raise InvalidQuery("since", "since is later than until; give an earlier since")
            raise InvalidQuery(
                "until",
                f"until is earlier than since (by default {DEFAULT_SINCE} ago); give a later "
                "until, or an earlier since",
            )
        bucket_ms = int(bucket_s * 1000)
        if (until_ms - (since_ms - since_ms % bucket_ms)) // bucket_ms + 1 > MAX_BUCKETS:
            raise InvalidQuery(
                "bucket",
                f"{format_duration(bucket_s)} buckets over that window make more than "
                f"{MAX_BUCKETS}; use larger buckets or a shorter window",
            )
        return cls(bucket_ms=bucket_ms, since_ms=since_ms, until_ms=until_ms)


def _empty(start_ms: int) -> dict[str, Any]:
    return {
        "start": iso_ms(start_ms),
        "start_ms": start_ms,
        "deliveries": dict.fromkeys(DELIVERY_SERIES, 0),
        "runs": dict.fromkeys(RUN_SERIES, 0),
    }


def _count(bucket: dict[str, Any], fields: dict[bytes, bytes]) -> None:
    kind = text(fields.get(b"kind"))
    status = text(fields.get(b"status"))
    if kind == "delivery" and status in DELIVERY_SERIES:
        bucket["deliveries"][status] += 1
    elif kind == "rejected":
        try:
            bucket["deliveries"]["rejected"] += max(1, int(text(fields.get(b"count")) or 1))
        except ValueError:
            bucket["deliveries"]["rejected"] += 1
    elif kind == "run" and status in RUN_SERIES:
        bucket["runs"][status] += 1


async def stats(redis: aioredis.Redis, keys: Keys, query: StatsQuery) -> dict[str, Any]:
    """The counts of ``query``'s window, oldest bucket first (empty buckets included)."""
    first = query.since_ms - query.since_ms % query.bucket_ms
    buckets = [_empty(ms) for ms in range(first, query.until_ms + 1, query.bucket_ms)]
    high = str(query.until_ms)
    scanned = 0
    scanned_from: int | None = None
    truncated = False
    while True:
        batch = await redis.xrevrange(keys.audit, high, str(query.since_ms), count=BATCH)
        for sid, fields in batch:
            ms = stream_id_ms(text(sid))
            _count(buckets[(ms - first) // query.bucket_ms], fields)
        scanned += len(batch)
        if len(batch) < BATCH:
            break
        last = text(batch[-1][0])
        if scanned >= MAX_SCAN:
            truncated = True
            scanned_from = stream_id_ms(last)
            break
        high = f"({last}"
    return {
        "bucket": format_duration(query.bucket_ms / 1000),
        "bucket_s": query.bucket_ms / 1000,
        "since": iso_ms(query.since_ms),
        "until": iso_ms(query.until_ms),
        "series": {"deliveries": list(DELIVERY_SERIES), "runs": list(RUN_SERIES)},
        "truncated": truncated,
        "scanned_from": iso_ms(scanned_from) if scanned_from is not None else None,
        "buckets": buckets,
    }
