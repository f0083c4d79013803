"""``/v1/templates``: the one-click catalog and its deployments."""

from __future__ import annotations

from aiohttp import web

from .. import validation as v
from ..catalog import TEMPLATES, template
from ..errors import invalid, not_found
from ..ids import new_id, rfc3339_now
from ..keys import BACKGROUND, CONFIG, DISPATCHER, STATE
from ..models import Deployment


def _get(request: web.Request) -> Deployment:
    dep_id = request.match_info["id"]
    deployment = request.app[STATE].deployments.get(dep_id)
    if deployment is None:
        raise not_found("Deployment", dep_id)
    return deployment


async def list_templates(request: web.Request) -> web.Response:
    """``GET /v1/templates``"""
    return web.json_response({"data": list(TEMPLATES)})


async def deploy(request: web.Request) -> web.Response:
    """``POST /v1/templates/deploy``: ``deploying`` now, ``template.deployed`` shortly."""
    app = request.app
    body = await v.json_object(request)
    template_id = v.required_string(body, "template")
    entry = template(template_id)
    if entry is None:
        raise invalid(
            "template",
            f"Unknown template {template_id}",
            allowed=[t["id"] for t in TEMPLATES],
        )
    versions: list[str] = entry["versions"]
    deployment = Deployment(
        id=new_id("dep"),
        template=template_id,
        name=v.name(body),
        version=v.choice(body, "version", versions, default=versions[0]),
        config=v.obj(body, "config"),
        region=app[CONFIG].region,
        created_at=rfc3339_now(),
    )
    app[STATE].deployments[deployment.id] = deployment

    async def deployed() -> None:
        current = app[STATE].deployments.get(deployment.id)
        if current is not None and current.status == "deploying":
            current.status = "running"
            app[DISPATCHER].emit("template.deployed", current.to_json())

    app[BACKGROUND].later(app[CONFIG].boot_delay, deployed, name=f"{deployment.id} deploy")
    return web.json_response(deployment.to_json(), status=201)


async def list_deployments(request: web.Request) -> web.Response:
    """``GET /v1/templates/deployments``"""
    deployments = request.app[STATE].deployments.values()
    return web.json_response({"data": [d.to_json() for d in deployments]})


async def get_deployment(request: web.Request) -> web.Response:
    """``GET /v1/templates/deployments/{id}``"""
    return web.json_response(_get(request).to_json())


async def delete_deployment(request: web.Request) -> web.Response:
    """``DELETE /v1/templates/deployments/{id}``"""
    deployment = _get(request)
    del request.app[STATE].deployments[deployment.id]
    deployment.status = "deleted"
    request.app[DISPATCHER].emit("template.deleted", deployment.to_json())
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_get("/v1/templates", list_templates)
    app.router.add_post("/v1/templates/deploy", deploy)
    app.router.add_get("/v1/templates/deployments", list_deployments)
    app.router.add_get("/v1/templates/deployments/{id}", get_deployment)
    app.router.add_delete("/v1/templates/deployments/{id}", delete_deployment)
