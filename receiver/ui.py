"""The dashboard: ``GET /ui`` (a page of plain HTML, JS and CSS from ``receiver/static``) and
the two admin calls it needs besides the admin API: ``GET /stats`` and ``POST /dry-run``.

The page itself holds nothing secret and loads without the token; it asks for the admin
token once, keeps it in the tab's ``sessionStorage`` and sends it as ``Authorization:
Bearer`` on every call — the live stream too (read with ``fetch()``, which can send the
header, not ``EventSource``, which cannot). The token never goes into a URL.

Dry runs need the rules, which only a worker has, and the receiver never imports the
worker's code. So ``POST /dry-run`` calls a hook that the process running both sets
(``tashooks serve``: ``tashooks.uiroutes.enable_dry_run``); in a receiver alone it answers
501 and the page says where dry runs can be had instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from receiver import bodies, responses
from receiver.admin import _admin
from receiver.events import EventInvalid, parse_event
from receiver.exceptions import InvalidQuery
from receiver.keys import Keys
from receiver.records import iso_ms
from receiver.state import AUDIT_LOG, SETTINGS
from receiver.stats import StatsQuery, stats

STATIC = Path(__file__).with_name("static")
ASSETS = {
    "ui.js": "application/javascript",
    "ui.css": "text/css",
}
PAGE = "ui.html"
# Largest dry-run request body.
MAX_DRY_RUN_BODY = 256 * 1024
NO_DRY_RUN = (
    "dry runs need the rules, which this process does not have (it runs the receiver "
    "only): use the dashboard of `tashooks serve`, or `tashooks test-rules`"
)


class DryRunRefused(Exception):
    """The hook cannot dry-run now (e.g. the rules file does not validate); the message
    says why and is shown to the user."""


# ``await hook(event)``: what the rules would do with ``event`` (a validated event
# document), as JSON-ready values; may raise ``DryRunRefused``.
DryRunHook = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
DRY_RUN: web.AppKey[DryRunHook] = web.AppKey("dry_run")
_PAGES: web.AppKey[dict[str, str]] = web.AppKey("ui_pages")

_HEADERS = {
    # Only this origin's own script and style; no inline code, no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(request: web.Request) -> web.Response:
    """``GET /ui``: the dashboard."""
    html = request.app[_PAGES][PAGE]
    state = "on" if DRY_RUN in request.app else "off"
    html = html.replace('data-dry-run="off"', f'data-dry-run="{state}"', 1)
    return web.Response(text=html, content_type="text/html", headers=_HEADERS)


async def asset(request: web.Request) -> web.Response:
    """``GET /ui/{name}``: the page's script and style sheet (nothing else is served)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        return responses.error(404, "not_found", f"no such file {name!r}")
    body = request.app[_PAGES][name]
    return web.Response(text=body, content_type=ASSETS[name], charset="utf-8", headers=_HEADERS)


async def get_stats(request: web.Request) -> web.Response:
    """``GET /stats?bucket=1m&since=1h&until=``: deliveries and rule runs per bucket."""
    q = request.query
    query = StatsQuery.parse(bucket=q.get("bucket"), since=q.get("since"), until=q.get("until"))
    audit = request.app[AUDIT_LOG]
    keys = Keys(request.app[SETTINGS].namespace)
    return web.json_response(await stats(audit.redis, keys, query))


async def _read_body(request: web.Request) -> bytes | None:
    """The (decoded) body, or None when it is larger than ``MAX_DRY_RUN_BODY``. Raises
    ``bodies.BodyUndecodable``."""
    if (request.content_length or 0) > MAX_DRY_RUN_BODY:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_DRY_RUN_BODY:
            return None
    encoding = request.headers.get("Content-Encoding")
    if encoding is None:
        return bytes(body)
    return bodies.decode(bytes(body), encoding, MAX_DRY_RUN_BODY)


def _event_from(raw: bytes) -> dict[str, Any]:
    """The event to dry-run: a JSON object with ``event`` and optionally ``timestamp``
    (now) and ``data`` (``{}``), validated as a delivery would be."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidQuery("body", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidQuery(
            "body", 'send the event as a JSON object, e.g. {"event": "vps.created", "data": {}}'
        )
    doc.setdefault("timestamp", iso_ms(int(time.time() * 1000)))
    doc.setdefault("data", {})
    try:
        return parse_event(json.dumps(doc).encode()).raw
    except EventInvalid as exc:
        raise InvalidQuery(exc.field, exc.message) from None


async def dry_run(request: web.Request) -> web.Response:
    """``POST /dry-run``: what the rules would do with the event in the body; nothing runs."""
    hook = request.app.get(DRY_RUN)
    if hook is None:
        return responses.error(501, "not_available", NO_DRY_RUN)
    try:
        raw = await _read_body(request)
    except bodies.BodyUndecodable as exc:
        return responses.error(exc.status, exc.code, exc.message, exc.details)
    if raw is None:
        return responses.error(
            413, "payload_too_large", f"a dry-run event is at most {MAX_DRY_RUN_BODY} bytes"
        )
    event = _event_from(raw)
    try:
        result = await hook(event)
    except DryRunRefused as exc:
        return responses.error(409, "rules_unavailable", str(exc))
    return web.json_response(result)


def _load_pages() -> dict[str, str]:
    return {name: (STATIC / name).read_text("utf-8") for name in (PAGE, *ASSETS)}


def add_ui_routes(app: web.Application) -> None:
    """Add the dashboard and its admin calls (only with the admin API: ``ADMIN_TOKEN``)."""
    app[_PAGES] = _load_pages()
    router = app.router
    router.add_get("/ui", page)
    router.add_get("/ui/{name}", asset)
    router.add_get("/stats", _admin(get_stats))
    router.add_post("/dry-run", _admin(dry_run))
