"""``/v1/webhooks``: registrations that receive signed event deliveries."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .. import validation as v
from ..errors import invalid, not_found
from ..keys import STATE
from ..models import Webhook


def _get(request: web.Request) -> Webhook:
    hook_id = request.match_info["id"]
    hook = request.app[STATE].webhooks.get(hook_id)
    if hook is None:
        raise not_found("Webhook", hook_id)
    return hook


async def create_webhook(request: web.Request) -> web.Response:
    """``POST /v1/webhooks``: the only answer that shows the secret."""
    body = await v.json_object(request)
    url = v.required_string(body, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "url must be an absolute http:// or https:// URL")
    hook = request.app[STATE].add_webhook(
        url, v.string_list(body, "events"), v.string(body, "secret", required=False)
    )
    return web.json_response(hook.to_json(with_secret=True), status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    """``GET /v1/webhooks`` (without secrets)."""
    hooks = request.app[STATE].webhooks.values()
    return web.json_response({"data": [h.to_json() for h in hooks]})


async def get_webhook(request: web.Request) -> web.Response:
    """``GET /v1/webhooks/{id}`` (without the secret)."""
    return web.json_response(_get(request).to_json())


async def delete_webhook(request: web.Request) -> web.Response:
    """``DELETE /v1/webhooks/{id}``"""
    hook = _get(request)
    del request.app[STATE].webhooks[hook.id]
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_post("/v1/webhooks", create_webhook)
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_get("/v1/webhooks/{id}", get_webhook)
    app.router.add_delete("/v1/webhooks/{id}", delete_webhook)
