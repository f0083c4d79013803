"""The simulator's HTTP endpoints, one module per resource family."""

from __future__ import annotations

from aiohttp import web

from . import control, kubernetes, networks, storage, templates, vps, webhooks


def setup_routes(app: web.Application) -> None:
    """Register every ``/v1`` endpoint and the ``/_sim`` controls."""
    for module in (vps, templates, kubernetes, storage, networks, webhooks, control):
        module.setup(app)
