"""``/v1/vps``: servers, their actions and their boot life cycle."""

from __future__ import annotations

from aiohttp import web

from .. import validation as v
from ..catalog import IMAGES, VPS_ACTIONS, VPS_SIZES
from ..errors import invalid, not_found
from ..ids import new_id, rfc3339_now
from ..keys import BACKGROUND, CONFIG, DISPATCHER, STATE
from ..models import Vps

#: action -> (statuses it may start from, status while it runs; None: takes effect at once)
_ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "shutdown": (("running",), None),
    "start": (("stopped",), "starting"),
    "reboot": (("running",), "rebooting"),
    "rebuild": (("running", "stopped"), "rebuilding"),
}


def _get(request: web.Request) -> Vps:
    vps_id = request.match_info["id"]
    vps = request.app[STATE].vps.get(vps_id)
    if vps is None:
        raise not_found("VPS", vps_id)
    return vps


def set_status(app: web.Application, vps: Vps, status: str) -> None:
    """Change the status and announce it with ``vps.status_changed``."""
    previous, vps.status = vps.status, status
    app[DISPATCHER].emit("vps.status_changed", {**vps.to_json(), "previous_status": previous})


def _finish_later(app: web.Application, vps: Vps) -> None:
    """After the boot delay, a VPS still in the same transitional status is running."""
    vps_id, transitional = vps.id, vps.status

    async def finish() -> None:
        current = app[STATE].vps.get(vps_id)
        # Deleted or changed meanwhile: this transition is stale.
        if current is not None and current.status == transitional:
            set_status(app, current, "running")

    app[BACKGROUND].later(app[CONFIG].boot_delay, finish, name=f"{vps_id} {transitional}")


async def list_vps(request: web.Request) -> web.Response:
    """``GET /v1/vps``"""
    return web.json_response({"data": [s.to_json() for s in request.app[STATE].vps.values()]})


async def create_vps(request: web.Request) -> web.Response:
    """``POST /v1/vps``: answers at once with status ``provisioning``."""
    app, state = request.app, request.app[STATE]
    body = await v.json_object(request)
    name = v.name(body)
    size = v.choice(body, "size", VPS_SIZES, what="VPS size")
    image = v.choice(body, "image", IMAGES)
    region = v.choice(body, "region", (app[CONFIG].region,), default=app[CONFIG].region)
    ssh_keys = v.string_list(body, "ssh_keys")
    network_id = v.string(body, "network", required=False)
    network = None
    if network_id is not None:
        network = state.networks.get(network_id)
        if network is None:
            raise invalid("network", f"Network {network_id} does not exist")
    vps = Vps(
        id=new_id("vps"),
        name=name,
        size=size,
        image=image,
        region=region,
        created_at=rfc3339_now(),
        ssh_keys=ssh_keys,
    )
    if network is not None:
        vps.networks.append(network.id)
        network.vps_ids.append(vps.id)
    state.vps[vps.id] = vps
    app[DISPATCHER].emit("vps.created", vps.to_json())
    _finish_later(app, vps)
    return web.json_response(vps.to_json(), status=201)


async def get_vps(request: web.Request) -> web.Response:
    """``GET /v1/vps/{id}``"""
    return web.json_response(_get(request).to_json())


async def delete_vps(request: web.Request) -> web.Response:
    """``DELETE /v1/vps/{id}``"""
    vps = _get(request)
    state = request.app[STATE]
    del state.vps[vps.id]
    for network_id in vps.networks:
        network = state.networks.get(network_id)
        if network is not None and vps.id in network.vps_ids:
            network.vps_ids.remove(vps.id)
    vps.status = "deleted"
    request.app[DISPATCHER].emit("vps.deleted", vps.to_json())
    return web.Response(status=204)


async def vps_action(request: web.Request) -> web.Response:
    """``POST /v1/vps/{id}/actions``: 202 with the VPS in its new status."""
    vps = _get(request)
    body = await v.json_object(request)
    action = v.choice(body, "action", VPS_ACTIONS)
    sources, transitional = _ACTIONS[action]
    if vps.status not in sources:
        raise invalid(
            "action",
            f"Cannot {action} VPS {vps.id} while it is {vps.status}",
            status=vps.status,
        )
    if action == "rebuild":
        vps.image = v.choice(body, "image", IMAGES, default=vps.image)
    if transitional is None:
        set_status(request.app, vps, "stopped")
    else:
        set_status(request.app, vps, transitional)
        _finish_later(request.app, vps)
    return web.json_response(vps.to_json(), status=202)


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_get("/v1/vps", list_vps)
    app.router.add_post("/v1/vps", create_vps)
    app.router.add_get("/v1/vps/{id}", get_vps)
    app.router.add_delete("/v1/vps/{id}", delete_vps)
    app.router.add_post("/v1/vps/{id}/actions", vps_action)
