"""The filters of an event listing, parsed from the admin API's query string or the CLI's
options into one typed value (``EventQuery``); bad values raise ``InvalidQuery``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from receiver.durations import parse_duration
from receiver.events import EventInvalid, parse_timestamp
from receiver.exceptions import InvalidQuery
from receiver.records import STATUSES, STREAM_ID

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Each part of a Redis stream id (<ms>-<seq>) is an unsigned 64-bit number.
MAX_STREAM_PART = 2**64 - 1
# The very start of a stream: nothing is older (and "(0-0" is no valid bound to Redis).
STREAM_START = "0-0"


def parse_time(value: str, field: str, now_ms: int | None = None) -> int:
    """A point in time in ms: RFC 3339 (``2024-01-15T10:30:00Z``) or a duration meaning
    "that long ago" (``1h``, ``30m``, ``7d``). A time before the epoch is the epoch (0):
    nothing in the audit stream is older, and Redis refuses negative stream ids."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = value.strip()
    try:
        ago_s = parse_duration(value)
    except ValueError:
        pass
    else:
        return now_ms - int(min(ago_s * 1000, now_ms))  # min: also an infinite duration
    try:
        return max(0, int(parse_timestamp(value).timestamp() * 1000))
    except EventInvalid:
        raise InvalidQuery(
            field,
            f"{value!r} is neither an RFC 3339 time (2024-01-15T10:30:00Z) nor a duration "
            "meaning that long ago (30m, 1h, 7d)",
        ) from None


def parse_limit(value: str | int | None, maximum: int = MAX_LIMIT) -> int:
    """A page size between 1 and ``maximum`` (default ``DEFAULT_LIMIT``)."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidQuery("limit", f"{value!r} is not a whole number") from None
    if not 1 <= limit <= maximum:
        raise InvalidQuery("limit", f"limit must be between 1 and {maximum}")
    return limit


def parse_stream_id(value: str | None, field: str) -> str | None:
    """An audit stream id (``<ms>-<seq>``, as in ``next_cursor`` or an SSE ``id:``)."""
    if not value:
        return None
    if not STREAM_ID.match(value):
        raise InvalidQuery(field, f"{value!r} is not a cursor; pass back a next_cursor or an id")
    ms, seq = (int(part) for part in value.split("-"))
    if ms > MAX_STREAM_PART or seq > MAX_STREAM_PART:
        raise InvalidQuery(
            field, f"{value!r} is past the largest stream id; pass back a next_cursor or an id"
        )
    return f"{ms}-{seq}"  # leading zeros gone: 0-0 is recognisable as the very start


def parse_statuses(value: str | None) -> frozenset[str] | None:
    """Comma-separated statuses, each one of ``STATUSES``."""
    if not value:
        return None
    wanted = frozenset(s.strip() for s in value.split(",") if s.strip())
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        raise InvalidQuery(
            "status", f"unknown status {', '.join(unknown)}; use one of {', '.join(STATUSES)}"
        )
    return wanted


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events to list, newest first, and where the page starts.

    ``type`` is a glob (``vps.*``), ``resource`` the resource id (``data.id``), ``statuses``
    a set of delivery statuses or outcomes (see ``receiver.records``), ``since_ms`` and
    ``until_ms`` bound the time of receipt (inclusive), ``cursor`` is the stream id after
    which (older than which) the page starts.
    """

    type: str | None = None
    resource: str | None = None
    statuses: frozenset[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        type: str | None = None,
        resource: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: str | int | None = None,
        cursor: str | None = None,
        now_ms: int | None = None,
    ) -> EventQuery:
        """Build a query from text values (any may be None); raises ``InvalidQuery``."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        query = cls(
            type=type or None,
            resource=resource or None,
            statuses=parse_statuses(status),
            since_ms=parse_time(since, "since", now_ms) if since else None,
            until_ms=parse_time(until, "until", now_ms) if until else None,
            limit=parse_limit(limit),
            cursor=parse_stream_id(cursor, "cursor"),
        )
        if query.since_ms is not None and query.until_ms is not None:
            if query.since_ms > query.until_ms:
                raise InvalidQuery("since", "since is later than until; give an earlier since")
        return query

    def wants_kind(self, kind: str) -> bool:
        """Deliveries are listed by default; rejected ones only when asked for."""
        if kind == "delivery":
            return True
        return kind == "rejected" and self.statuses is not None and "rejected" in self.statuses

    def matches_record(self, record: dict[str, Any]) -> bool:
        """The filters that a stream record answers by itself (kind, type, resource)."""
        if not self.wants_kind(str(record.get("kind"))):
            return False
        if self.type is not None and not fnmatchcase(str(record.get("type", "")), self.type):
            return False
        return self.resource is None or record.get("resource") == self.resource

    def matches_status(self, item: dict[str, Any]) -> bool:
        """An item matches when its delivery status or its outcome is one asked for."""
        if self.statuses is None:
            return True
        return item.get("delivery") in self.statuses or item.get("status") in self.statuses
