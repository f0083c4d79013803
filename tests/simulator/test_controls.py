"""Rate limiting, idempotency keys, the request log and fault injection."""

from __future__ import annotations

import time

import httpx
import pytest

from tashooks.simulator import RunningSimulator

from .conftest import API_KEY, SimFactory

VPS_BODY = {"name": "web-1", "size": "standard-2vcpu-4gb", "image": "ubuntu-24.04"}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def test_rate_limit_headers_then_429_with_retry_after(make_sim: SimFactory) -> None:
    sim = await make_sim(rate_limit=60, burst=3)
    async with httpx.AsyncClient(base_url=sim.url, headers=AUTH) as client:
        remaining = []
        for _ in range(3):
            response = await client.get("/vps")
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "60"
            assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]

        limited = await client.get("/vps")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["Retry-After"] == "1"  # one token a second at 60/min
    assert limited.headers["X-RateLimit-Remaining"] == "0"


async def test_idempotency_key_replays_the_first_answer(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    headers = {"Idempotency-Key": "create-web-1"}
    first = await api.post("/vps", json=VPS_BODY, headers=headers)
    second = await api.post("/vps", json=VPS_BODY, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(sim.state.vps) == 1
    assert sim.state.calls("POST", "/v1/vps") == 2  # both arrived, one acted

    other = await api.post("/vps", json=VPS_BODY, headers={"Idempotency-Key": "another"})
    assert other.json()["id"] != first.json()["id"]

    vps_id = first.json()["id"]
    gone = await api.delete(f"/vps/{vps_id}", headers={"Idempotency-Key": "del"})
    again = await api.delete(f"/vps/{vps_id}", headers={"Idempotency-Key": "del"})
    assert gone.status_code == again.status_code == 204


async def test_request_log_and_counts(
    api: httpx.AsyncClient, control: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    vps_id = (await api.post("/vps", json=VPS_BODY, headers={"Idempotency-Key": "k1"})).json()["id"]
    await api.get(f"/vps/{vps_id}")
    await api.get(f"/vps/{vps_id}")
    assert sim.state.calls("GET", "/v1/vps/{id}") == 2

    log = (await control.get("/requests")).json()
    assert log["counts"] == {"POST /v1/vps": 1, "GET /v1/vps/{id}": 2}
    first = log["data"][0]
    assert (first["method"], first["path"], first["status"]) == ("POST", "/v1/vps", 201)
    assert first["headers"]["Idempotency-Key"] == "k1"
    assert "Authorization" not in first["headers"]

    assert (await control.delete("/requests")).status_code == 204
    assert sim.state.requests == []


async def test_fault_status_for_count_requests(
    api: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    armed = await control.post(
        "/faults",
        json={
            "method": "GET",
            "path": "/v1/kubernetes/*",
            "status": 503,
            "count": 2,
            "headers": {"Retry-After": "7"},
        },
    )
    assert armed.status_code == 201
    assert (await api.get("/kubernetes")).status_code == 200  # glob needs the slash
    for _ in range(2):
        response = await api.get("/kubernetes/k8s_x")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"]["code"] == "unavailable"
    assert (await api.get("/kubernetes/k8s_x")).status_code == 404  # spent
    assert (await control.get("/faults")).json() == {"data": []}


async def test_fault_reset_drops_the_connection(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    sim.state.add_fault("/v1/vps", method="POST", reset=True)
    with pytest.raises(httpx.TransportError):
        await api.post("/vps", json=VPS_BODY)
    assert sim.state.vps == {}  # dropped before acting
    assert sim.state.requests[-1].status is None
    assert (await api.post("/vps", json=VPS_BODY)).status_code == 201


async def test_fault_after_acting_is_what_idempotency_keys_are_for(
    api: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    sim.state.add_fault("/v1/vps", method="POST", reset=True, after=True)
    headers = {"Idempotency-Key": "retry-me"}
    with pytest.raises(httpx.TransportError):
        await api.post("/vps", json=VPS_BODY, headers=headers)
    retried = await api.post("/vps", json=VPS_BODY, headers=headers)
    assert retried.status_code == 201
    assert list(sim.state.vps) == [retried.json()["id"]]


async def test_fault_delay_alone_makes_a_slow_answer(
    api: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    await control.post("/faults", json={"path": "/v1/vps", "delay": 0.3})
    started = time.monotonic()
    assert (await api.get("/vps")).status_code == 200
    assert time.monotonic() - started >= 0.3
    await control.post("/faults", json={"path": "/v1/vps", "delay": 5})
    with pytest.raises(httpx.ReadTimeout):
        await api.get("/vps", timeout=0.2)


async def test_clearing_faults(api: httpx.AsyncClient, control: httpx.AsyncClient) -> None:
    await control.post("/faults", json={"path": "/v1/*", "status": 500, "count": None})
    assert (await api.get("/vps")).status_code == 500
    assert (await api.get("/networks")).status_code == 500
    assert (await control.delete("/faults")).status_code == 204
    assert (await api.get("/vps")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": 500}, "path"),
        ({"path": "/v1/vps"}, "status"),
        ({"path": "/v1/vps", "status": 200}, "status"),
        ({"path": "/v1/vps", "status": 500, "count": 0}, "count"),
        ({"path": "/v1/vps", "reset": "yes"}, "reset"),
    ],
)
async def test_fault_validation(
    control: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await control.post("/faults", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == field
