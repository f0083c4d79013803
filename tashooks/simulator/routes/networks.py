"""``/v1/networks``: private networks, VPS attachment and VPN access."""

from __future__ import annotations

import ipaddress
import uuid

from aiohttp import web

from .. import validation as v
from ..errors import invalid, not_found
from ..ids import new_id, rfc3339_now
from ..keys import CONFIG, STATE
from ..models import Network


def _get(request: web.Request) -> Network:
    net_id = request.match_info["id"]
    network = request.app[STATE].networks.get(net_id)
    if network is None:
        raise not_found("Network", net_id)
    return network


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise invalid("cidr", f"cidr is not a network address: {exc}") from exc
    if net.version != 4 or not net.is_private or not 8 <= net.prefixlen <= 29:
        raise invalid("cidr", "cidr must be a private IPv4 range from /8 to /29")
    return str(net)


async def list_networks(request: web.Request) -> web.Response:
    """``GET /v1/networks``"""
    networks = request.app[STATE].networks.values()
    return web.json_response({"data": [n.to_json() for n in networks]})


async def create_network(request: web.Request) -> web.Response:
    """``POST /v1/networks``"""
    body = await v.json_object(request)
    network = Network(
        id=new_id("net"),
        name=v.name(body),
        cidr=_cidr(v.required_string(body, "cidr")),
        region=request.app[CONFIG].region,
        created_at=rfc3339_now(),
        setup_key=str(uuid.uuid4()).upper(),
    )
    request.app[STATE].networks[network.id] = network
    return web.json_response(network.to_json(), status=201)


async def get_network(request: web.Request) -> web.Response:
    """``GET /v1/networks/{id}``"""
    return web.json_response(_get(request).to_json())


async def attach(request: web.Request) -> web.Response:
    """``POST /v1/networks/{id}/attach``: attaching twice is harmless."""
    network = _get(request)
    body = await v.json_object(request)
    vps_id = v.required_string(body, "vps_id")
    vps = request.app[STATE].vps.get(vps_id)
    if vps is None:
        raise invalid("vps_id", f"VPS {vps_id} does not exist")
    if network.id not in vps.networks:
        vps.networks.append(network.id)
    if vps.id not in network.vps_ids:
        network.vps_ids.append(vps.id)
    return web.json_response(network.to_json())


async def vpn_config(request: web.Request) -> web.Response:
    """``GET /v1/networks/{id}/vpn-config``"""
    network = _get(request)
    return web.json_response(
        {
            "network_id": network.id,
            "setup_key": network.setup_key,
            "management_url": "https://vpn.tasmanian.cloud",
            "instructions": "Install Netbird client and use the setup key to connect",
        }
    )


async def delete_network(request: web.Request) -> web.Response:
    """``DELETE /v1/networks/{id}``: detaches its servers first."""
    network = _get(request)
    state = request.app[STATE]
    for vps_id in network.vps_ids:
        vps = state.vps.get(vps_id)
        if vps is not None and network.id in vps.networks:
            vps.networks.remove(network.id)
    del state.networks[network.id]
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_get("/v1/networks", list_networks)
    app.router.add_post("/v1/networks", create_network)
    app.router.add_get("/v1/networks/{id}", get_network)
    app.router.add_post("/v1/networks/{id}/attach", attach)
    app.router.add_get("/v1/networks/{id}/vpn-config", vpn_config)
    app.router.add_delete("/v1/networks/{id}", delete_network)
