"""``/_sim``: test controls (faults, request log, deliveries). No auth: local use only."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import validation as v
from ..errors import invalid
from ..keys import BACKGROUND, STATE


def _fault_args(body: dict[str, Any]) -> dict[str, Any]:
    path = v.required_string(body, "path")
    if not path.startswith("/"):
        raise invalid("path", "path must start with '/', e.g. /v1/kubernetes/*")
    status = body.get("status")
    if status is not None and (
        not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599
    ):
        raise invalid("status", "status must be an HTTP error status (400-599) or null")
    # An explicit null count means "until cleared"; absent means once.
    count = body.get("count", 1)
    if count is not None:
        count = v.integer(body, "count", default=1, low=1, high=1_000_000)
    headers = v.obj(body, "headers")
    if not all(isinstance(value, str) for value in headers.values()):
        raise invalid("headers", "header values must be strings")
    reset, after = body.get("reset", False), body.get("after", False)
    for field, flag in (("reset", reset), ("after", after)):
        if not isinstance(flag, bool):
            raise invalid(field, f"{field} must be true or false")
    delay = v.number(body, "delay", default=0.0)
    if status is None and not reset and not delay:
        raise invalid("status", "a fault needs a status, reset: true or a delay")
    return {
        "path": path,
        "method": v.string(body, "method", required=False),
        "status": status,
        "count": count,
        "delay": delay,
        "headers": headers,
        "reset": reset,
        "after": after,
    }


async def add_fault(request: web.Request) -> web.Response:
    """``POST /_sim/faults`` (body as ``SimulatorState.add_fault``'s arguments)."""
    body = await v.json_object(request)
    fault = request.app[STATE].add_fault(**_fault_args(body))
    return web.json_response(fault.to_json(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    """``GET /_sim/faults``: the faults still armed."""
    return web.json_response({"data": [f.to_json() for f in request.app[STATE].faults]})


async def clear_faults(request: web.Request) -> web.Response:
    """``DELETE /_sim/faults``"""
    request.app[STATE].clear_faults()
    return web.Response(status=204)


async def list_requests(request: web.Request) -> web.Response:
    """``GET /_sim/requests``: the request log and per-route counts."""
    state = request.app[STATE]
    counts = {f"{method} {pattern}": n for (method, pattern), n in state.call_counts.items()}
    return web.json_response({"data": [r.to_json() for r in state.requests], "counts": counts})


async def clear_requests(request: web.Request) -> web.Response:
    """``DELETE /_sim/requests``"""
    request.app[STATE].clear_requests()
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    """``GET /_sim/deliveries[?event=type]``: every delivery attempt."""
    records = request.app[STATE].deliveries_for(request.query.get("event"))
    return web.json_response({"data": [d.to_json() for d in records]})


async def wait_idle(request: web.Request) -> web.Response:
    """``POST /_sim/idle[?timeout=s]``: return once no transition or delivery is pending."""
    try:
        max_wait = float(request.query.get("timeout", "10"))
    except ValueError as exc:
        raise invalid("timeout", "timeout must be a number of seconds") from exc
    try:
        await request.app[BACKGROUND].wait_idle(max_wait)
    except TimeoutError:
        return web.json_response(
            {"idle": False, "pending": request.app[BACKGROUND].pending}, status=504
        )
    return web.json_response({"idle": True, "pending": 0})


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_post("/_sim/faults", add_fault)
    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_delete("/_sim/requests", clear_requests)
    app.router.add_get("/_sim/deliveries", list_deliveries)
    app.router.add_post("/_sim/idle", wait_idle)
