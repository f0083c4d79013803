"""Audit records as people and programs read them: stream entries decoded to JSON-ready
dicts, stream ids and times, and an event's overall status (see README, "Admin API").

The audit stream stores every value as a string; values that the writer encoded as JSON
(numbers, objects, the delivered event) are decoded again here, while fields that are
always text (ids, names, messages) stay strings even when they look like numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

# What a delivery was (the audit record's own status)...
DELIVERY_STATUSES = ("accepted", "duplicate", "rejected")
# ...and what came of an accepted one, computed from its rule runs (see ``outcome``).
OUTCOMES = ("pending", "ok", "failed", "deferred", "throttled", "stale", "no_match")
STATUSES = DELIVERY_STATUSES + OUTCOMES

# Severity order: an event is reported by the first of these that any of its runs has.
_RUN_ORDER = ("failed", "deferred", "ok", "throttled", "stale")

_TEXT_FIELDS = frozenset(
    {
        "kind",
        "status",
        "id",
        "type",
        "resource",
        "source",
        "rule",
        "step_id",
        "error",
        "deadletter",
        "reason",
    }
)
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def outcome(run_statuses: Collection[str], pending: bool) -> str:
    """The overall status of an accepted event.

    ``pending`` while a job for it is queued or running; otherwise, from the latest run of
    each rule: ``failed`` if any failed (it is in the dead-letter list), else ``deferred``
    if any waits to be retried later, else ``ok`` if any ran to the end (the others were
    throttled or stale), else ``throttled``, else ``stale``; ``no_match`` when no rule ran.
    """
    if pending:
        return "pending"
    if not run_statuses:
        return "no_match"
    for status in _RUN_ORDER:
        if status in run_statuses:
            return status
    return sorted(run_statuses)[0]


def text(value: bytes | str | None) -> str:
    """A Redis reply as text ('' for None)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def stream_id_ms(stream_id: str) -> int:
    """The time (ms since the epoch) of a stream entry id ``<ms>-<seq>``."""
    return int(stream_id.partition("-")[0])


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2024-01-15T10:30:00.123Z``."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _value(name: str, raw: str) -> Any:
    if name in _TEXT_FIELDS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def decode_entry(stream_id: bytes | str, fields: Mapping[Any, Any]) -> dict[str, Any]:
    """One audit stream entry as a record: ``stream_id``, ``at`` (its time, RFC 3339),
    ``kind`` and the entry's fields (JSON-encoded values decoded)."""
    sid = text(stream_id)
    record: dict[str, Any] = {"stream_id": sid, "at": iso_ms(stream_id_ms(sid))}
    for name, raw in fields.items():
        key = text(name)
        record[key] = _value(key, text(raw))
    record.setdefault("kind", "")
    return record


def runs_of(event_hash: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The latest run of each rule kept in an event's hash (fields ``run:<rule>``), in the
    order they started."""
    runs = []
    for name, raw in event_hash.items():
        if text(name).startswith("run:"):
            try:
                runs.append(json.loads(text(raw)))
            except ValueError:
                continue
    return sorted(runs, key=lambda r: (r.get("started_ms") or 0, str(r.get("rule"))))
