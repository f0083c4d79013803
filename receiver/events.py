"""The webhook event: validation of a delivery's body, canonical form, ids."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# RFC 3339 date-time: a full date, "T" (or space, per its note), a time and an offset.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FUTURE_SKEW = timedelta(minutes=5)
# The platform's event types (API reference, "Event Types"); others are accepted too.
KNOWN_EVENT_TYPES = (
    "vps.created",
    "vps.deleted",
    "vps.status_changed",
    "template.deployed",
    "template.deleted",
    "kubernetes.ready",
    "storage.bucket_created",
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two characters
# Seeded from os.urandom once per process (so two processes never share a sequence).
_random = random.Random(int.from_bytes(os.urandom(16), "big"))


class EventInvalid(Exception):
    """A delivery body that is not a valid event; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Event:
    """A validated delivery; ``canonical`` is its canonical JSON (the dedup identity)."""

    type: str
    timestamp: datetime
    data: dict[str, Any]
    raw: dict[str, Any]
    canonical: bytes = b""

    @property
    def digest(self) -> str:
        """SHA-256 hex of the canonical JSON."""
        return hashlib.sha256(self.canonical).hexdigest()

    @property
    def timestamp_ms(self) -> int:
        """The event's timestamp in milliseconds since the epoch."""
        return int(self.timestamp.timestamp() * 1000)

    @property
    def resource_id(self) -> str | None:
        """``data.id`` when it is a string (the resource the event is about)."""
        rid = self.data.get("id")
        return rid if isinstance(rid, str) else None


def parse_timestamp(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp (with offset) or raise ``EventInvalid``."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise EventInvalid(
            "timestamp", "timestamp must be an RFC 3339 date-time, e.g. 2024-01-15T10:30:00Z"
        )
    try:
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise EventInvalid(
            "timestamp", f"timestamp {value!r} is not a valid date-time (RFC 3339)"
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large for a double")
    return value


# Built once: json.loads/json.dumps with options build a new decoder/encoder every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_event(body: bytes) -> Event:
    """Validate a delivery body: a JSON object with ``event``, ``timestamp`` and ``data``.

    Strict JSON (RFC 8259): no NaN/Infinity, no numbers beyond a double, no unpaired
    surrogates, nesting within Python's limits.
    """
    try:
        doc = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:
        raise EventInvalid("body", "body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if "integer string conversion" in str(exc):  # Python's limit, not the sender's fix
            raise EventInvalid(
                "body", "body has an integer of more than 4300 digits; send it as a string"
            ) from exc
        raise EventInvalid("body", f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise EventInvalid("body", "body must be a JSON object")
    etype = doc.get("event")
    if not isinstance(etype, str) or not etype:
        raise EventInvalid("event", "event must be a non-empty string, e.g. vps.created")
    ts = parse_timestamp(doc.get("timestamp"))
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventInvalid("data", "data must be a JSON object")
    try:
        canonical = canonical_json(doc)
    except UnicodeEncodeError:
        raise EventInvalid("body", "body contains an unpaired UTF-16 surrogate") from None
    except (RecursionError, ValueError):
        raise EventInvalid("body", "body is nested too deeply") from None
    return Event(type=etype, timestamp=ts, data=data, raw=doc, canonical=canonical)


def check_age(event: Event, window_s: float, now: datetime | None = None) -> None:
    """Refuse an event older than the dedup window or more than 5 minutes in the future."""
    now = now or datetime.now(UTC)
    if event.timestamp < now - timedelta(seconds=window_s):
        raise EventInvalid(
            "timestamp", "timestamp is older than the dedup window; the event is not accepted"
        )
    if event.timestamp > now + FUTURE_SKEW:
        raise EventInvalid(
            "timestamp", "timestamp is more than 5 minutes in the future; check the sender's clock"
        )


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8: equal events give equal bytes."""
    return _CANONICAL.encode(doc).encode()


def digest(doc: Any) -> str:
    """SHA-256 hex of the canonical JSON: the dedup identity of a delivery."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def new_event_id(now_ms: int | None = None) -> str:
    """``evt_`` and a ULID (48-bit ms time, 80 random bits): unique and sortable by time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    # Uniqueness, not secrecy, is what the random part is for: the fast generator serves
    # (os.urandom is a system call per id on the ingest path).
    value = (ms << 80) | _random.getrandbits(80)
    # 26 characters of 5 bits = 13 pairs of 10 bits, most significant first.
    return "evt_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def id_time_ms(value: str) -> int | None:
    """The time (ms) in an id made by ``new_event_id`` (any ``<prefix>_`` + ULID), or None
    when ``value`` is not such an id."""
    _, sep, ulid = value.rpartition("_")
    if not sep or len(ulid) != 26:
        return None
    ms = 0
    for char in ulid[:10].upper():
        digit = _CROCKFORD.find(char)
        if digit < 0:
            return None
        ms = ms * 32 + digit
    return ms
