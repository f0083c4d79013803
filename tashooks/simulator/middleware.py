"""The request pipeline around every view, outermost first.

``observe`` (log, count, rate-limit headers) -> ``inject_faults`` -> ``authenticate`` ->
``rate_limit`` -> ``idempotency`` -> ``errors`` -> view. Faults sit outside auth and the
rate limit so an armed fault fires on exactly the next matching requests; ``errors`` is
innermost so idempotency caches the platform-format answer a view's ``ApiError`` becomes.
Only ``/v1`` is subject to all this; ``/_sim`` control endpoints pass straight to ``errors``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import struct

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import ApiError, error_response
from .keys import BUCKET, CONFIG, RECORD, STATE
from .state import CachedResponse

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDEMPOTENT_METHODS = frozenset({"POST", "DELETE"})


def is_api(request: web.Request) -> bool:
    """Whether the request is for the platform API (as opposed to ``/_sim`` controls)."""
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log and count the request; put ``X-RateLimit-*`` on every answer."""
    if not is_api(request):
        return await handler(request)
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else request.path
    record = request.app[STATE].record_request(
        request.method, request.path, pattern, dict(request.query), request.headers
    )
    request[RECORD] = record
    response = await handler(request)
    for name, value in request.app[BUCKET].headers().items():
        response.headers.setdefault(name, value)
    transport = request.transport
    record.status = None if transport is None or transport.is_closing() else response.status
    return response


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST, as a crashing proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger on with a zero timeout makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the first armed fault matching the request (see ``faults.Fault``)."""
    if not is_api(request):
        return await handler(request)
    fault = request.app[STATE].faults.take(request.method, request.path)
    if fault is None:
        return await handler(request)
    response = await handler(request) if fault.after else None
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.reset:
        _reset_connection(request)
        # Nobody reads this: the connection is gone. aiohttp needs an answer all the same.
        return web.Response(status=500)
    if fault.status is not None:
        return error_response(
            fault.status,
            f"injected fault {fault.id}",
            headers=dict(fault.headers),
            details={"fault": fault.id},
        )
    if response is None:
        response = await handler(request)
    response.headers.update(fault.headers)
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth with the configured key; the read-only key may only read."""
    if not is_api(request):
        return await handler(request)
    config = request.app[CONFIG]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(
            401, "Missing API key", headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    given = token.encode()
    if hmac.compare_digest(given, config.api_key.encode()):
        return await handler(request)
    if config.readonly_api_key is not None and hmac.compare_digest(
        given, config.readonly_api_key.encode()
    ):
        if request.method in _SAFE_METHODS:
            return await handler(request)
        return error_response(403, "This API key may only read", details={"method": request.method})
    return error_response(
        401, "Invalid API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One token per request; an empty bucket answers 429 with ``Retry-After``."""
    if not is_api(request):
        return await handler(request)
    bucket = request.app[BUCKET]
    if bucket.try_acquire():
        return await handler(request)
    wait = bucket.retry_after()
    return error_response(
        429,
        f"Rate limit of {bucket.per_minute} requests per minute exceeded",
        headers={"Retry-After": str(wait)},
        details={"retry_after": wait},
    )


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Replay the first answer to a repeated ``Idempotency-Key`` (same method and path).

    Server errors and 429s are not remembered: the request did not act, so a retry with
    the same key should really run.
    """
    key = request.headers.get("Idempotency-Key")
    if not is_api(request) or request.method not in _IDEMPOTENT_METHODS or not key:
        return await handler(request)
    state = request.app[STATE]
    cache_key = (key, request.method, request.path)
    # A lock per key: a retry racing the first attempt waits for it, then replays it.
    lock = state.idempotency_locks.setdefault(cache_key, asyncio.Lock())
    async with lock:
        cached = state.idempotency.get(cache_key)
        if cached is not None:
            headers = {"Idempotent-Replayed": "true"}
            if cached.content_type:
                headers["Content-Type"] = cached.content_type
            return web.Response(status=cached.status, body=cached.body, headers=headers)
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        if response.status < 500 and response.status != 429 and isinstance(body, bytes | None):
            state.idempotency[cache_key] = CachedResponse(
                status=response.status,
                body=body or b"",
                content_type=response.headers.get("Content-Type"),
            )
        return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ``ApiError``, aiohttp's own 404/405 and crashes into the platform format."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        message = (
            f"No such endpoint: {request.method} {request.path}"
            if exc.status == 404
            else exc.reason
        )
        return error_response(exc.status, message, headers=headers)
    except Exception:
        log.exception("simulator view crashed on %s %s", request.method, request.path)
        return error_response(500, "Internal server error")


MIDDLEWARES = (observe, inject_faults, authenticate, rate_limit, idempotency, errors)
