"""The admin HTTP API (Bearer ``ADMIN_TOKEN``): the audit log, replays and dead letters.

The routes exist only when ``ADMIN_TOKEN`` is set (otherwise those paths are 404). Domain
errors become HTTP answers here, in ``_admin``, and nowhere else.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import RedisError

from receiver import responses, sse
from receiver.connection import storage_trouble
from receiver.durations import format_duration
from receiver.exceptions import InvalidQuery, NotFound
from receiver.query import EventQuery, parse_limit
from receiver.state import AUDIT_LOG, DEADLETTERS, REQUEUE, SETTINGS

logger = logging.getLogger("tashooks.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_S = "5"


def _authorized(request: web.Request) -> bool:
    token = request.app[SETTINGS].admin_token
    if token is None or not token.get_secret_value():
        return False
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


def _admin(handler: Handler) -> Handler:
    """Check the Bearer token (in constant time) and map domain errors to HTTP answers."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not _authorized(request):
            return responses.error(
                401,
                "unauthorized",
                "missing or wrong admin token; send Authorization: Bearer <TASHOOKS_ADMIN_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="tashooks"'},
            )
        try:
            return await handler(request)
        except NotFound as exc:
            window = format_duration(request.app[SETTINGS].dedup_window)
            where = f" in the last {window}" if exc.kind == "event" else ""
            return responses.error(404, "not_found", f"{exc}{where}", {"id": exc.id})
        except InvalidQuery as exc:
            return responses.error(422, "validation_error", exc.message, {"field": exc.field})
        except (RedisError, OSError) as exc:
            if not storage_trouble(exc):
                raise  # a command Redis refused: a bug, answered 500 and logged in full
            logger.error("admin API: Redis unavailable: %s", exc)
            return responses.error(
                503,
                "unavailable",
                "storage is unavailable; retry later",
                headers={"Retry-After": RETRY_AFTER_S},
            )

    return guarded


async def list_events(request: web.Request) -> web.Response:
    """``GET /events``: events newest first, filtered, one page."""
    q = request.query
    query = EventQuery.parse(
        type=q.get("type"),
        resource=q.get("resource"),
        status=q.get("status"),
        since=q.get("since"),
        until=q.get("until"),
        limit=q.get("limit"),
        cursor=q.get("cursor"),
    )
    page = await request.app[AUDIT_LOG].list_events(query)
    return web.json_response({"data": page.data, "next_cursor": page.next_cursor})


async def get_event(request: web.Request) -> web.Response:
    """``GET /events/{id}``: the event, its delivery and its rule runs."""
    event_id = request.match_info["id"]
    event = await request.app[AUDIT_LOG].get_event(event_id)
    if event is None:
        raise NotFound("event", event_id)
    return web.json_response(event)


async def replay_event(request: web.Request) -> web.Response:
    """``POST /events/{id}/replay``: queue the event's rules to run again."""
    queued = await request.app[REQUEUE].replay(request.match_info["id"])
    return web.json_response(
        {"status": "queued", "job_id": queued.job_id, "event_id": queued.event_id}, status=202
    )


async def list_deadletters(request: web.Request) -> web.Response:
    """``GET /deadletters``: dead letters newest first, one page."""
    limit = parse_limit(request.query.get("limit"))
    data, cursor = await request.app[DEADLETTERS].page(limit, request.query.get("cursor") or None)
    return web.json_response({"data": data, "next_cursor": cursor})


async def retry_deadletter(request: web.Request) -> web.Response:
    """``POST /deadletters/{id}/retry``: run the rule again and remove the dead letter."""
    queued = await request.app[REQUEUE].retry(request.match_info["id"])
    return web.json_response(
        {"status": "queued", "job_id": queued.job_id, "event_id": queued.event_id}, status=202
    )


async def delete_deadletter(request: web.Request) -> web.Response:
    """``DELETE /deadletters/{id}``: forget a dead letter without running it."""
    dl_id = request.match_info["id"]
    if not await request.app[DEADLETTERS].remove(dl_id):
        raise NotFound("dead letter", dl_id)
    return web.Response(status=204)


def add_admin_routes(app: web.Application) -> None:
    """Add the admin API's routes to ``app`` (each checks the admin token)."""
    router = app.router
    router.add_get("/events", _admin(list_events))
    # Before /events/{id}, which would take "stream" for an id.
    router.add_get("/events/stream", _admin(sse.stream_events))
    router.add_get("/events/{id}", _admin(get_event))
    router.add_post("/events/{id}/replay", _admin(replay_event))
    router.add_get("/deadletters", _admin(list_deadletters))
    router.add_post("/deadletters/{id}/retry", _admin(retry_deadletter))
    router.add_delete("/deadletters/{id}", _admin(delete_deadletter))
