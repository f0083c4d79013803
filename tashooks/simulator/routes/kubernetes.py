"""``/v1/kubernetes``: clusters that become ready after a delay, and their kubeconfigs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import validation as v
from ..catalog import DEFAULT_K8S_VERSION, K8S_VERSIONS, VPS_SIZES
from ..errors import ApiError, invalid, not_found
from ..ids import new_id, rfc3339_now
from ..keys import BACKGROUND, CONFIG, DISPATCHER, STATE
from ..kubeconfig import fake_pem, render
from ..models import Cluster, NodePool

_DEFAULT_POOL = NodePool(name="default", size="standard-2vcpu-4gb", count=3)


def _get(request: web.Request) -> Cluster:
    cluster_id = request.match_info["id"]
    cluster = request.app[STATE].clusters.get(cluster_id)
    if cluster is None:
        raise not_found("Cluster", cluster_id)
    return cluster


def _node_pools(body: dict[str, Any]) -> list[NodePool]:
    raw = body.get("node_pools")
    if raw is None:
        return [NodePool(_DEFAULT_POOL.name, _DEFAULT_POOL.size, _DEFAULT_POOL.count)]
    if not isinstance(raw, list) or not raw:
        raise invalid("node_pools", "node_pools must be a non-empty list")
    pools = []
    for index, item in enumerate(raw):
        where = f"node_pools[{index}]"
        if not isinstance(item, dict):
            raise invalid(where, f"{where} must be an object")
        try:
            pool = NodePool(
                name=v.name(item),
                size=v.choice(item, "size", VPS_SIZES, what="node size"),
                count=v.integer(item, "count", default=1, low=1, high=100),
            )
        except ApiError as exc:
            # Point at the pool, not just the key inside it.
            exc.details["field"] = f"{where}.{exc.details.get('field')}"
            raise
        pools.append(pool)
    return pools


async def list_clusters(request: web.Request) -> web.Response:
    """``GET /v1/kubernetes``"""
    clusters = request.app[STATE].clusters.values()
    return web.json_response({"data": [c.to_json() for c in clusters]})


async def create_cluster(request: web.Request) -> web.Response:
    """``POST /v1/kubernetes``: ``provisioning`` now, ``ready`` after ``ready_delay``."""
    app = request.app
    body = await v.json_object(request)
    cluster = Cluster(
        id=new_id("k8s"),
        name=v.name(body),
        version=v.choice(
            body, "version", K8S_VERSIONS, default=DEFAULT_K8S_VERSION, what="Kubernetes version"
        ),
        node_pools=_node_pools(body),
        region=app[CONFIG].region,
        created_at=rfc3339_now(),
        ca=fake_pem("CERTIFICATE"),
        cert=fake_pem("CERTIFICATE"),
        key=fake_pem("EC PRIVATE KEY"),
    )
    app[STATE].clusters[cluster.id] = cluster

    async def ready() -> None:
        current = app[STATE].clusters.get(cluster.id)
        if current is not None and current.status == "provisioning":
            current.status = "ready"
            app[DISPATCHER].emit("kubernetes.ready", current.to_json())

    app[BACKGROUND].later(app[CONFIG].ready_delay, ready, name=f"{cluster.id} ready")
    return web.json_response(cluster.to_json(), status=201)


async def get_cluster(request: web.Request) -> web.Response:
    """``GET /v1/kubernetes/{id}``"""
    return web.json_response(_get(request).to_json())


async def get_kubeconfig(request: web.Request) -> web.Response:
    """``GET /v1/kubernetes/{id}/kubeconfig``: YAML, once the cluster is ready."""
    cluster = _get(request)
    if cluster.status != "ready":
        raise invalid(
            "id",
            f"Cluster {cluster.id} is not ready yet (status: {cluster.status})",
            status=cluster.status,
        )
    return web.Response(text=render(cluster), content_type="application/yaml")


async def delete_cluster(request: web.Request) -> web.Response:
    """``DELETE /v1/kubernetes/{id}``"""
    cluster = _get(request)
    del request.app[STATE].clusters[cluster.id]
    cluster.status = "deleted"
    request.app[DISPATCHER].emit("kubernetes.deleted", cluster.to_json())
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_get("/v1/kubernetes", list_clusters)
    app.router.add_post("/v1/kubernetes", create_cluster)
    app.router.add_get("/v1/kubernetes/{id}", get_cluster)
    app.router.add_get("/v1/kubernetes/{id}/kubeconfig", get_kubeconfig)
    app.router.add_delete("/v1/kubernetes/{id}", delete_cluster)
