"""JSON answers in the platform's own error format: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

logger = logging.getLogger("tashooks.receiver")


def error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.json_response(body, status=status, headers=headers)


_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Set by create_app when the admin API (and the dashboard) are off: their paths then 404
# with a hint that says how to turn them on.
ADMIN_OFF = web.AppKey("admin_off", bool)
_ADMIN_PATHS = ("/events", "/deadletters", "/stats", "/dry-run", "/ui")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own error answers (unknown path, wrong method, a body over the limit) and
    unexpected failures in the platform's error format instead of plain text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json" or _sent(request):
            raise
        return _from_http_exception(request, exc)
    except Exception:
        if _sent(request):  # too late for an answer: aiohttp logs it and drops the connection
            raise
        logger.exception("unhandled error answering %s %s", request.method, request.path)
        return error(
            500,
            "internal_error",
            "tashooks failed to answer this request; the log has the details (please report "
            "it with the request's X-Request-ID)",
        )


def _sent(request: web.Request) -> bool:
    """Part of an answer (a live stream's headers) went out already."""
    return request.writer.output_size > 0


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _CODES.get(exc.status) or exc.reason.lower().replace(" ", "_").replace("-", "_")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    details: dict[str, Any] = {}
    if exc.status == 404 and request.app.get(ADMIN_OFF) and request.path.startswith(_ADMIN_PATHS):
        message = (
            f"{request.path} is part of the admin API and dashboard, which are off: set "
            "TASHOOKS_ADMIN_TOKEN to turn them on"
        )
    elif exc.status == 404:
        message = f"no such path: {request.path}; GET /openapi.json lists this server's API"
    elif exc.status == 405:
        allowed = sorted(m for m in exc.headers.get("Allow", "").split(",") if m)
        details = {"allowed": allowed}
        message = (
            f"{request.method} is not allowed on {request.path}; use "
            f"{' or '.join(allowed) or 'another method'}"
        )
    elif exc.status == 413:
        message = f"{exc.text or exc.reason}; send a smaller body"
    else:
        message = exc.text or exc.reason
        if message.startswith(f"{exc.status}: "):
            message = message[len(f"{exc.status}: ") :]
    return error(exc.status, code, message, details, headers)
