"""JSON answers in the platform's own error format: ``{"error": {code, message, details}}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web


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
