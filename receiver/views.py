"""HTTP views of the receiver: ``POST /webhooks`` and the health endpoints.

Domain errors are mapped to HTTP answers here and nowhere else.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time

from aiohttp import web

from receiver import bodies, logctx, responses
from receiver.events import EventInvalid, check_age, parse_event
from receiver.exceptions import StoreUnavailable
from receiver.openapi import openapi_document
from receiver.signatures import HEADER, verify
from receiver.state import INGESTOR, METRICS, REJECTIONS, SECRETS, SETTINGS

logger = logging.getLogger("tashooks.receiver")
RETRY_AFTER_S = "5"
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]+$")
# Request ids: a random per-process prefix and a counter (unique, and no syscall each).
_REQUEST_IDS = itertools.count(int.from_bytes(secrets.token_bytes(6), "big") << 24)
# A body that takes longer than this to arrive is refused (slow clients hold connections).
BODY_TIMEOUT_S = 30.0


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` (without reading it all)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _buffered_body(request: web.Request, limit: int) -> bytes | None:
    """The body when all of it has arrived (no wait, so no timer), or None when it is
    larger than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = request.content.read_nowait(-1)
    return None if len(body) > limit else body


class _OutageLog:
    """One ERROR line per ``every_s`` while Redis is away, with how many deliveries were
    refused since the last one (an outage at thousands a second is not thousands of lines)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.last = -every_s
        self.unlogged = 0

    def log(self, error: str) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            self.unlogged += 1
            return
        more = f" (and {self.unlogged} more since the last report)" if self.unlogged else ""
        logger.error("Redis unavailable, delivery not acknowledged: %s%s", error, more)
        self.last, self.unlogged = now, 0


_UNAVAILABLE = _OutageLog()


def _rejected(request: web.Request, outcome: str, field: str = "") -> None:
    """Count a refused delivery (metrics, and the aggregated audit record); no I/O here."""
    request.app[METRICS].delivery(outcome)
    reason = f"{outcome}:{field}" if field else outcome
    request.app[REJECTIONS].add(reason, request.remote or "")
    logger.debug("delivery refused: %s", reason, extra={"source": request.remote or ""})


def _answer(status: int, outcome: str, event_id: str) -> web.Response:
    """``{"status": outcome, "id": event_id}`` (ids are plain ASCII: no encoder needed)."""
    body = b'{"status":"' + outcome.encode() + b'","id":"' + event_id.encode() + b'"}'
    return web.Response(status=status, body=body, content_type="application/json")


def _request_id(request: web.Request) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new one."""
    given = request.headers.get("X-Request-ID", "")
    if 0 < len(given) <= 64 and _TOKEN.match(given):
        return given
    return f"req_{next(_REQUEST_IDS):x}"


async def post_webhook(request: web.Request) -> web.Response:
    """Verify, validate, deduplicate, store and queue one delivery (checks cheapest first)."""
    logctx.request_id.set(_request_id(request))
    app = request.app
    settings = app[SETTINGS]
    metrics = app[METRICS]
    try:
        if request.content.is_eof():  # the whole body is here already (the usual case)
            body = _buffered_body(request, settings.max_body)
        else:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await _read_body(request, settings.max_body)
    except TimeoutError:
        _rejected(request, "body_timeout")
        return responses.error(
            408, "request_timeout", f"the body did not arrive within {BODY_TIMEOUT_S:g}s"
        )
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and body is not None:
        try:
            body = bodies.decode(body, encoding, settings.max_body)
        except bodies.BodyUndecodable as exc:
            _rejected(request, exc.reason)
            return responses.error(exc.status, exc.code, exc.message, exc.details)
    if body is None:
        _rejected(request, "too_large")
        return responses.error(
            413,
            "payload_too_large",
            f"body is larger than {settings.max_body} bytes",
            {"limit": settings.max_body},
        )
    configured: list[bytes] = app[SECRETS]
    if not verify(body, request.headers.get(HEADER), configured):
        _rejected(request, "unauthorized")
        return responses.error(
            401,
            "unauthorized",
            f"{HEADER} is missing or does not match the body; sign the raw body with "
            "HMAC-SHA256 and the shared webhook secret",
        )
    try:
        event = parse_event(body)
        check_age(event, settings.dedup_window)
    except EventInvalid as exc:
        _rejected(request, "invalid", exc.field)
        return responses.error(422, "validation_error", exc.message, {"field": exc.field})
    try:
        stored = await app[INGESTOR].store(event, source=request.remote or "")
    except StoreUnavailable as exc:
        metrics.delivery("unavailable", event.type)
        metrics.redis_errors.labels(component="receiver").inc()
        _UNAVAILABLE.log(str(exc))
        return responses.error(
            503,
            "unavailable",
            "storage did not confirm the delivery (Redis unreachable or too slow); retry "
            "later: if it was stored after all, the retry is answered as a duplicate",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    logctx.event_id.set(stored.id)
    if not stored.new:
        metrics.delivery("duplicate", event.type)
        return _answer(200, "duplicate", stored.id)
    metrics.delivery("accepted", event.type)
    # DEBUG: at thousands a second, the audit stream is the record of each delivery.
    logger.debug("delivery accepted", extra={"event_id": stored.id, "event_type": event.type})
    return _answer(202, "accepted", stored.id)


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis is reachable (so deliveries can be stored); also the version of the rules the
    workers last loaded (``null`` before any worker started)."""
    ingestor = request.app[INGESTOR]
    if await ingestor.ping():
        version = await ingestor.rules_version()
        return web.json_response({"status": "ready", "redis": "ok", "rules_version": version})
    return responses.error(
        503, "unavailable", "Redis is not reachable", headers={"Retry-After": RETRY_AFTER_S}
    )


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text exposition. Queue depth and dead letters are read from Redis now."""
    metrics = request.app[METRICS]
    depths = await request.app[INGESTOR].depths()
    if depths is None:
        metrics.redis_errors.labels(component="receiver").inc()
    else:
        metrics.queue_depth.set(depths[0])
        metrics.deadletters.set(depths[1])
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi_view(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this HTTP API."""
    return web.json_response(openapi_document())
