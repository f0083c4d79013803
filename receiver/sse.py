"""``GET /events/stream``: the audit stream live, as Server-Sent Events.

Each audit record is one SSE event: ``id:`` its stream id, ``event:`` its kind
(``delivery``, ``run``, ``step``, ``rejected``), ``data:`` the record as JSON on one line.
A client that reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) gets everything
after that id, nothing twice. A comment line is sent when nothing else was for
``HEARTBEAT_S``, so proxies keep the connection open.

Each stream reads with its own Redis connection (the blocking ``XREAD`` would tie up one
of the shared pool), closed when the client goes away or the app shuts down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from receiver.connection import connect
from receiver.keys import Keys
from receiver.query import parse_stream_id
from receiver.state import CLOSING, SETTINGS
from receiver.tail import Tail

logger = logging.getLogger("tashooks.admin")

HEARTBEAT_S = 15.0
# Longest single blocking read: how soon a gone client or a shutdown is noticed.
POLL_S = 1.0
# Between two tries while Redis does not answer.
RETRY_S = 1.0


def format_event(record: dict[str, Any]) -> bytes:
    """One record as an SSE event (compact JSON has no line breaks, so one ``data:``)."""
    data = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {record['stream_id']}\nevent: {record['kind']}\ndata: {data}\n\n".encode()


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pump(request: web.Request, response: web.StreamResponse, tail: Tail) -> None:
    closing = request.app[CLOSING]
    last_write = time.monotonic()
    down = False  # Redis did not answer the last read
    while not closing.is_set() and not _gone(request):
        wait_s = min(POLL_S, max(0.0, HEARTBEAT_S - (time.monotonic() - last_write)))
        try:
            records = await tail.read(block_ms=max(1, int(wait_s * 1000)))
        except (RedisError, OSError) as exc:
            # The stream stays open and says so; it goes on from its last record (nothing
            # lost) when Redis is back.
            if not down:
                logger.warning("event stream: Redis unavailable, retrying: %s", exc)
            try:
                if not down:
                    await response.write(
                        b": Redis is unavailable; the stream waits for it and goes on where "
                        b"it left off\n\n"
                    )
                    last_write = time.monotonic()
                elif time.monotonic() - last_write >= HEARTBEAT_S:
                    await response.write(b": heartbeat\n\n")
                    last_write = time.monotonic()
            except ConnectionResetError:
                return
            down = True
            await asyncio.sleep(RETRY_S)
            continue
        try:
            if down:
                down = False
                await response.write(b": Redis is back\n\n")
            for record in records:
                await response.write(format_event(record))
            if records:
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= HEARTBEAT_S:
                await response.write(b": heartbeat\n\n")
                last_write = time.monotonic()
        except ConnectionResetError:
            return


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Stream new audit records (optionally only about events of ``type`` (a glob) or
    ``resource``) until the client disconnects."""
    settings = request.app[SETTINGS]
    after = parse_stream_id(
        request.headers.get("Last-Event-ID") or request.query.get("last_event_id"),
        "last_event_id",
    )
    redis = connect(settings.redis_url, max_connections=1)
    try:
        tail = Tail(
            redis,
            Keys(settings.namespace),
            after=after,
            type_glob=request.query.get("type") or None,
            resource=request.query.get("resource") or None,
        )
        await tail.start(resume=True)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        await response.prepare(request)
        try:
            await response.write(b": connected\n\n")
            if tail.ahead:
                await response.write(
                    b": last_event_id is ahead of the audit stream (was its data lost?); "
                    b"following from its newest record\n\n"
                )
        except ConnectionResetError:
            return response
        await _pump(request, response, tail)
        return response
    finally:
        await redis.aclose()
