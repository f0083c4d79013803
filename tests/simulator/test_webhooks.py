"""Signed webhook deliveries from the simulator to a real receiving server."""

from __future__ import annotations

import httpx

from receiver.signatures import HEADER, verify
from tashooks.simulator import RunningSimulator

from .conftest import Inbox, SimFactory

VPS_BODY = {"name": "web-1", "size": "standard-2vcpu-4gb", "image": "ubuntu-24.04"}


async def register(api: httpx.AsyncClient, url: str, **extra: object) -> dict[str, str]:
    response = await api.post("/webhooks", json={"url": url, **extra})
    assert response.status_code == 201
    hook: dict[str, str] = response.json()
    return hook


async def test_vps_and_cluster_events_arrive_signed(
    api: httpx.AsyncClient, sim: RunningSimulator, inbox: Inbox
) -> None:
    hook = await register(api, inbox.url)
    secret = hook["secret"].encode()
    vps = (await api.post("/vps", json=VPS_BODY)).json()
    cluster = (await api.post("/kubernetes", json={"name": "prod", "version": "1.29"})).json()

    created = await inbox.wait_for("vps.created")
    running = await inbox.wait_for("vps.status_changed", "running")
    ready = await inbox.wait_for("kubernetes.ready")

    for delivery in (created, running, ready):
        assert verify(delivery.body, delivery.headers[HEADER], [secret])
        assert not verify(delivery.body, delivery.headers[HEADER], [b"other-secret"])
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.json["timestamp"].endswith("Z")

    assert created.json["data"] == {**vps, "status": "provisioning"}
    assert running.json["data"]["id"] == vps["id"]
    assert running.json["data"]["previous_status"] == "provisioning"
    assert set(running.json["data"]) >= {"name", "size", "region", "networks", "created_at"}
    data = ready.json["data"]
    assert (data["id"], data["name"], data["version"], data["status"]) == (
        cluster["id"],
        "prod",
        "1.29",
        "ready",
    )
    # One registration gets its events in order.
    events = inbox.events()
    assert events.index("vps.created") < events.index("vps.status_changed")


async def test_events_filter_and_secret_of_choice(
    api: httpx.AsyncClient, sim: RunningSimulator, inbox: Inbox
) -> None:
    await register(api, inbox.url, events=["storage.bucket_created"], secret="s3cret")
    await api.post("/vps", json=VPS_BODY)
    await api.post("/storage/buckets", json={"name": "logs"})
    await sim.wait_idle()
    assert inbox.events() == ["storage.bucket_created"]
    delivery = inbox.received[0]
    assert verify(delivery.body, delivery.headers[HEADER], [b"s3cret"])
    assert delivery.json["data"]["name"] == "logs"


async def test_action_and_delete_events(
    api: httpx.AsyncClient, sim: RunningSimulator, inbox: Inbox
) -> None:
    await register(api, inbox.url, events=["vps.*", "template.*"])
    vps_id = (await api.post("/vps", json=VPS_BODY)).json()["id"]
    await sim.wait_idle()
    await api.post(f"/vps/{vps_id}/actions", json={"action": "shutdown"})
    await api.post(f"/vps/{vps_id}/actions", json={"action": "start"})
    await sim.wait_idle()
    await api.delete(f"/vps/{vps_id}")
    dep = (await api.post("/templates/deploy", json={"template": "redis", "name": "cache"})).json()
    await sim.wait_idle()
    await api.delete(f"/templates/deployments/{dep['id']}")
    await sim.wait_idle()

    seen = [(d.json["event"], d.json["data"]["status"]) for d in inbox.received]
    assert seen == [
        ("vps.created", "provisioning"),
        ("vps.status_changed", "running"),
        ("vps.status_changed", "stopped"),
        ("vps.status_changed", "starting"),
        ("vps.status_changed", "running"),
        ("vps.deleted", "deleted"),
        ("template.deployed", "running"),
        ("template.deleted", "deleted"),
    ]


async def test_failed_deliveries_are_retried_and_recorded(
    make_sim: SimFactory, inbox: Inbox
) -> None:
    sim = await make_sim(delivery_attempts=3)
    inbox.statuses = [500, 503]
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": f"Bearer {sim.config.api_key}"}
    ) as api:
        await register(api, inbox.url, events=["storage.bucket_created"])
        await api.post("/storage/buckets", json={"name": "logs"})
    await sim.wait_idle()

    attempts = sim.state.deliveries_for("storage.bucket_created")
    assert [(a.attempt, a.status, a.ok) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert len({a.delivery_id for a in attempts}) == 1
    # Retries resend the very same bytes, so a receiver can deduplicate them.
    assert len({d.body for d in inbox.received}) == 1


async def test_unreachable_receiver_gives_up_after_the_attempts(
    make_sim: SimFactory,
) -> None:
    sim = await make_sim(delivery_attempts=2)
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": f"Bearer {sim.config.api_key}"}
    ) as api:
        await register(api, "http://127.0.0.1:9/nothing-listens-here")
        await api.post("/storage/buckets", json={"name": "logs"})
    await sim.wait_idle()
    attempts = sim.state.deliveries_for("storage.bucket_created")
    assert [a.attempt for a in attempts] == [1, 2]
    assert all(a.status is None and a.error for a in attempts)


async def test_client_errors_are_not_retried(make_sim: SimFactory, inbox: Inbox) -> None:
    sim = await make_sim()
    inbox.statuses = [401]
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": f"Bearer {sim.config.api_key}"}
    ) as api:
        await register(api, inbox.url)
        await api.post("/storage/buckets", json={"name": "logs"})
    await sim.wait_idle()
    assert [a.status for a in sim.state.deliveries] == [401]


async def test_closing_with_deliveries_pending_is_clean(make_sim: SimFactory) -> None:
    sim = await make_sim(boot_delay=30)
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": f"Bearer {sim.config.api_key}"}
    ) as api:
        await api.post("/vps", json=VPS_BODY)
    await sim.close()  # the 30 s boot is cancelled, nothing is left pending
