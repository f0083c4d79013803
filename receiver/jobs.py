"""The job payload shared by the enqueue side and the worker, and its JSON serializer.

Jobs are JSON, never pickle: whoever can write to Redis must not be able to run code in
the worker. Exceptions and other odd values that arq may put into a result are written as
their ``str``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PROCESS_EVENT = "process_event"
RUN_RULE = "run_rule"


def serialize(obj: Any) -> bytes:
    """arq job serializer: compact JSON."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize(data: bytes) -> Any:
    """arq job deserializer: JSON only."""
    return json.loads(data)


def event_payload(
    event_id: str,
    raw: dict[str, Any],
    received_ms: int,
    ts_ms: int,
    replay: int = 0,
    retry: int = 0,
) -> dict[str, Any]:
    """The single argument of a ``process_event`` job. ``ts_ms`` is the event's own
    timestamp (for per-resource ordering); ``replay`` counts replays (0: first delivery),
    ``retry`` the event's dead-letter retries (0: none). Together they tell a run's
    generation: a replay supersedes older runs, and each replay or retry is a new request
    to the platform (``run_generation``)."""
    payload: dict[str, Any] = {
        "id": event_id,
        "received_ms": received_ms,
        "ts_ms": ts_ms,
        "event": raw,
    }
    if replay:
        payload["replay"] = replay
    if retry:
        payload["retry"] = retry
    return payload


def run_generation(payload: Mapping[str, Any]) -> str:
    """``""`` for a first delivery, else ``:replay<n>`` and/or ``:retry<m>``: what sets a
    deliberate re-run's requests apart from the earlier run's (``Idempotency-Key``)."""
    replay, retry = payload.get("replay"), payload.get("retry")
    return (f":replay{replay}" if replay else "") + (f":retry{retry}" if retry else "")


def process_event_job(event_id: str, canonical: bytes, received_ms: int, ts_ms: int) -> bytes:
    """The serialized ``process_event`` job of a new delivery, in arq's job format
    (``arq.jobs.serialize_job`` with our serializer gives the same document).

    Built around the event's canonical JSON, which is already valid JSON, instead of
    serialising the event a second time on the ingest path.
    """
    return b"".join(
        (
            b'{"t":null,"f":"',
            PROCESS_EVENT.encode(),
            b'","a":[{"id":"',
            event_id.encode(),
            b'","received_ms":',
            str(received_ms).encode(),
            b',"ts_ms":',
            str(ts_ms).encode(),
            b',"event":',
            canonical,
            b'}],"k":{},"et":',
            str(received_ms).encode(),
            b"}",
        )
    )
