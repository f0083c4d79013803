"""The simulated /v1 API over loopback HTTP: auth, resources, validation, errors."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tashooks.simulator import RunningSimulator

from .conftest import API_KEY, SimFactory

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
VPS_BODY = {"name": "web-1", "size": "standard-2vcpu-4gb", "image": "ubuntu-24.04"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    err: dict[str, Any] = body["error"]
    return err


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
async def test_requests_without_the_key_get_401_in_platform_format(
    sim: RunningSimulator, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.url}/vps", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["X-RateLimit-Limit"] == "300"


async def test_readonly_key_may_read_but_not_write(make_sim: SimFactory) -> None:
    sim = await make_sim(readonly_api_key="viewer")
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": "Bearer viewer"}
    ) as client:
        assert (await client.get("/vps")).status_code == 200
        response = await client.post("/vps", json=VPS_BODY)
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert sim.state.vps == {}


async def test_vps_create_get_list_delete(api: httpx.AsyncClient, sim: RunningSimulator) -> None:
    created = await api.post("/vps", json={**VPS_BODY, "ssh_keys": ["key-1"]})
    assert created.status_code == 201
    vps = created.json()
    assert vps["id"].startswith("vps_")
    assert vps["status"] == "provisioning"
    assert vps["region"] == "tas-1"
    assert vps["networks"] == []
    assert ISO_Z.match(vps["created_at"])

    assert (await api.get(f"/vps/{vps['id']}")).json()["id"] == vps["id"]
    assert [v["id"] for v in (await api.get("/vps")).json()["data"]] == [vps["id"]]

    await sim.wait_idle()
    assert (await api.get(f"/vps/{vps['id']}")).json()["status"] == "running"

    deleted = await api.delete(f"/vps/{vps['id']}")
    assert deleted.status_code == 204
    assert (await api.get("/vps")).json() == {"data": []}
    assert (await api.get(f"/vps/{vps['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("action", "during", "after"),
    [("shutdown", "stopped", "stopped"), ("reboot", "rebooting", "running")],
)
async def test_vps_actions_change_status(
    api: httpx.AsyncClient, sim: RunningSimulator, action: str, during: str, after: str
) -> None:
    vps_id = (await api.post("/vps", json=VPS_BODY)).json()["id"]
    await sim.wait_idle()
    response = await api.post(f"/vps/{vps_id}/actions", json={"action": action})
    assert response.status_code == 202
    assert response.json()["status"] == during
    await sim.wait_idle()
    assert (await api.get(f"/vps/{vps_id}")).json()["status"] == after


async def test_vps_action_in_the_wrong_state_is_refused(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    vps_id = (await api.post("/vps", json=VPS_BODY)).json()["id"]
    await sim.wait_idle()
    response = await api.post(f"/vps/{vps_id}/actions", json={"action": "start"})
    assert response.status_code == 422
    assert error_of(response)["details"] == {"field": "action", "status": "running"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size": "standard-2vcpu-4gb", "image": "ubuntu-24.04"}, "name"),
        ({**VPS_BODY, "name": "Not A Hostname"}, "name"),
        ({**VPS_BODY, "image": "windows-95"}, "image"),
        ({**VPS_BODY, "ssh_keys": "key"}, "ssh_keys"),
        ({**VPS_BODY, "network": "net_missing"}, "network"),
        ({**VPS_BODY, "region": "mars-1"}, "region"),
    ],
)
async def test_vps_validation_names_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/vps", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field


async def test_bad_size_lists_the_allowed_ones(api: httpx.AsyncClient) -> None:
    response = await api.post("/vps", json={**VPS_BODY, "size": "huge"})
    error = error_of(response)
    assert error["message"] == "Invalid VPS size specified"
    assert error["details"]["field"] == "size"
    assert "standard-2vcpu-4gb" in error["details"]["allowed"]
    assert "standard-4vcpu-8gb" in error["details"]["allowed"]


async def test_body_that_is_not_json_is_a_validation_error(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/vps", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert error_of(response)["details"]["field"] == "body"


@pytest.mark.parametrize(
    "path",
    [
        "/vps/vps_0000",
        "/kubernetes/k8s_0000",
        "/kubernetes/k8s_0000/kubeconfig",
        "/networks/net_0000/vpn-config",
        "/templates/deployments/dep_0000",
        "/webhooks/whk_0000",
        "/no/such/endpoint",
    ],
)
async def test_unknown_things_are_404_in_platform_format(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_kubernetes_lifecycle_and_kubeconfig(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    response = await api.post(
        "/kubernetes",
        json={
            "name": "prod",
            "version": "1.29",
            "node_pools": [{"name": "default", "size": "standard-4vcpu-8gb", "count": 3}],
        },
    )
    assert response.status_code == 201
    cluster = response.json()
    assert cluster["id"].startswith("k8s_")
    assert cluster["status"] == "provisioning"
    early = await api.get(f"/kubernetes/{cluster['id']}/kubeconfig")
    assert early.status_code == 422

    await sim.wait_idle()
    assert (await api.get(f"/kubernetes/{cluster['id']}")).json()["status"] == "ready"
    assert len((await api.get("/kubernetes")).json()["data"]) == 1

    kubeconfig = await api.get(f"/kubernetes/{cluster['id']}/kubeconfig")
    assert kubeconfig.status_code == 200
    assert kubeconfig.headers["content-type"].startswith("application/yaml")
    text = kubeconfig.text
    assert "kind: Config" in text
    assert f"- name: prod-{cluster['id']}\n" in text  # the cluster entry
    assert f"current-context: prod-{cluster['id']}-admin@prod-{cluster['id']}" in text
    assert re.search(r"server: https://\S+:6443", text)
    assert re.search(r"certificate-authority-data: [A-Za-z0-9+/=]{100,}", text)

    assert (await api.delete(f"/kubernetes/{cluster['id']}")).status_code == 204
    assert (await api.get(f"/kubernetes/{cluster['id']}")).status_code == 404


async def test_kubernetes_node_pool_errors_point_into_the_list(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/kubernetes", json={"name": "c", "node_pools": [{"name": "p", "size": "tiny"}]}
    )
    assert error_of(response)["details"]["field"] == "node_pools[0].size"
    response = await api.post("/kubernetes", json={"name": "c", "version": "0.1"})
    assert error_of(response)["details"]["field"] == "version"


async def test_templates_deploy_list_delete(api: httpx.AsyncClient, sim: RunningSimulator) -> None:
    catalog = (await api.get("/templates")).json()["data"]
    assert "postgres" in [t["id"] for t in catalog]

    response = await api.post(
        "/templates/deploy",
        json={"template": "postgres", "name": "my-db", "version": "16", "config": {"a": "b"}},
    )
    assert response.status_code == 201
    deployment = response.json()
    assert deployment["id"].startswith("dep_")
    assert deployment["status"] == "deploying"
    await sim.wait_idle()
    listed = (await api.get("/templates/deployments")).json()["data"]
    assert [(d["id"], d["status"]) for d in listed] == [(deployment["id"], "running")]

    assert (await api.delete(f"/templates/deployments/{deployment['id']}")).status_code == 204
    assert (await api.get("/templates/deployments")).json() == {"data": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "template"),
        ({"template": "oracle", "name": "x"}, "template"),
        ({"template": "postgres", "name": "x", "version": "9"}, "version"),
        ({"template": "postgres"}, "name"),
        ({"template": "postgres", "name": "x", "config": []}, "config"),
    ],
)
async def test_deploy_validation(api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    response = await api.post("/templates/deploy", json=body)
    assert response.status_code == 422
    assert error_of(response)["details"]["field"] == field


async def test_storage_buckets_and_credentials(api: httpx.AsyncClient) -> None:
    created = await api.post("/storage/buckets", json={"name": "my-bucket", "region": "tas-1"})
    assert created.status_code == 201
    assert created.json()["name"] == "my-bucket"
    again = await api.post("/storage/buckets", json={"name": "my-bucket"})
    assert error_of(again)["details"]["field"] == "name"
    assert [b["name"] for b in (await api.get("/storage/buckets")).json()["data"]] == ["my-bucket"]

    creds = await api.post(
        "/storage/credentials", json={"bucket": "my-bucket", "permissions": ["read", "write"]}
    )
    assert creds.status_code == 201
    body = creds.json()
    assert re.match(r"^TAS[A-Z0-9]{17}$", body["access_key"])
    assert len(body["secret_key"]) == 40
    assert body["endpoint"] == "https://s3.tas-1.tasmanian.cloud"

    missing = await api.post("/storage/credentials", json={"bucket": "nope"})
    assert error_of(missing)["details"]["field"] == "bucket"
    bad = await api.post("/storage/credentials", json={"bucket": "my-bucket", "permissions": ["x"]})
    assert error_of(bad)["details"]["field"] == "permissions"

    assert (await api.delete("/storage/buckets/my-bucket")).status_code == 204
    assert (await api.delete("/storage/buckets/my-bucket")).status_code == 404


async def test_networks_attach_vpn_delete(api: httpx.AsyncClient) -> None:
    net = (await api.post("/networks", json={"name": "my-network", "cidr": "10.0.0.0/24"})).json()
    assert net["id"].startswith("net_")
    vps_id = (await api.post("/vps", json=VPS_BODY)).json()["id"]

    attached = await api.post(f"/networks/{net['id']}/attach", json={"vps_id": vps_id})
    assert attached.status_code == 200
    assert attached.json()["vps_ids"] == [vps_id]
    assert (await api.get(f"/vps/{vps_id}")).json()["networks"] == [net["id"]]

    no_vps = await api.post(f"/networks/{net['id']}/attach", json={"vps_id": "vps_nope"})
    assert error_of(no_vps)["details"]["field"] == "vps_id"
    no_net = await api.post("/networks/net_nope/attach", json={"vps_id": vps_id})
    assert no_net.status_code == 404

    vpn = (await api.get(f"/networks/{net['id']}/vpn-config")).json()
    assert re.match(r"^[0-9A-F-]{36}$", vpn["setup_key"])
    assert vpn["management_url"] == "https://vpn.tasmanian.cloud"

    assert [n["id"] for n in (await api.get("/networks")).json()["data"]] == [net["id"]]
    assert (await api.delete(f"/networks/{net['id']}")).status_code == 204
    assert (await api.get(f"/vps/{vps_id}")).json()["networks"] == []


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "8.8.8.0/24", "nonsense", None])
async def test_network_cidr_validation(api: httpx.AsyncClient, cidr: str | None) -> None:
    response = await api.post("/networks", json={"name": "n", "cidr": cidr})
    assert error_of(response)["details"]["field"] == "cidr"


async def test_vps_created_into_a_network(api: httpx.AsyncClient) -> None:
    net_id = (await api.post("/networks", json={"name": "n", "cidr": "10.1.0.0/16"})).json()["id"]
    vps = (await api.post("/vps", json={**VPS_BODY, "network": net_id})).json()
    assert vps["networks"] == [net_id]


async def test_webhook_registration(api: httpx.AsyncClient) -> None:
    response = await api.post("/webhooks", json={"url": "http://127.0.0.1:9/x"})
    assert response.status_code == 201
    hook = response.json()
    assert hook["id"].startswith("whk_")
    assert len(hook["secret"]) >= 32
    assert hook["events"] == ["*"]
    listed = (await api.get("/webhooks")).json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]  # shown once, at creation

    assert (await api.delete(f"/webhooks/{hook['id']}")).status_code == 204
    assert (await api.get("/webhooks")).json() == {"data": []}

    bad = await api.post("/webhooks", json={"url": "ftp://example.com", "events": ["vps.created"]})
    assert error_of(bad)["details"]["field"] == "url"
    bad = await api.post("/webhooks", json={"url": "http://example.com", "events": "vps.created"})
    assert error_of(bad)["details"]["field"] == "events"
