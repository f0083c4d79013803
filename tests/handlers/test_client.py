"""The API client against the simulator over loopback: errors, 429 waits, safety."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from handlers.client import ApiClient, wait_seconds
from handlers.exceptions import ApiError, RateLimited, TransportError
from tashooks.simulator import SimulatorConfig, start_simulator
from tashooks.simulator.app import RunningSimulator

API_KEY = "client-test-key"


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(SimulatorConfig(api_key=API_KEY), "127.0.0.1", 0)
    yield running
    await running.close()


@pytest.fixture
async def api(sim: RunningSimulator) -> AsyncIterator[ApiClient]:
    async with ApiClient(sim.url, API_KEY, timeout=5.0) as client:
        yield client


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"X-RateLimit-Reset": str(int(NOW + 12))}, 12.0),
        ({"X-RateLimit-Reset": str(int(NOW - 100))}, 0.0),  # in the past: now
        ({"X-RateLimit-Reset": "5"}, 5.0),  # small: seconds from now
        ({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW + 60))}, 3.0),
        ({}, 1.0),
    ],
)
def test_wait_seconds(headers: dict[str, str], expected: float) -> None:
    assert wait_seconds(httpx.Headers(headers), now=NOW) == pytest.approx(expected, abs=1.0)


async def test_success_parses_json_and_sends_bearer(api: ApiClient, sim: RunningSimulator) -> None:
    created = await api.request(
        "POST", "/networks", json_body={"name": "n1", "cidr": "10.0.0.0/24"}, idempotency_key="k1"
    )
    assert created.status in (200, 201)
    assert created.body["name"] == "n1"
    listed = await api.request("GET", "/networks")
    assert [n["id"] for n in listed.body["data"]] == [created.body["id"]]
    assert "x-ratelimit-limit" in listed.headers


async def test_platform_errors_become_api_errors(api: ApiClient) -> None:
    with pytest.raises(ApiError) as info:
        await api.request("GET", "/vps/vps_missing")
    assert info.value.status == 404 and info.value.code == "not_found"
    assert not info.value.retryable
    with pytest.raises(ApiError) as info:
        await api.request("POST", "/vps", json_body={"name": "x", "size": "huge", "image": "u"})
    assert info.value.status == 422 and info.value.code == "validation_error"
    assert info.value.details["field"] == "size"


async def test_wrong_key_is_unauthorized(sim: RunningSimulator) -> None:
    async with ApiClient(sim.url, "wrong") as client:
        with pytest.raises(ApiError) as info:
            await client.request("GET", "/vps")
    assert info.value.code == "unauthorized"


async def test_5xx_retryable_only_for_idempotent_methods(
    api: ApiClient, sim: RunningSimulator
) -> None:
    sim.state.add_fault(method="GET", path="/v1/vps", status=500, count=1)
    with pytest.raises(ApiError) as info:
        await api.request("GET", "/vps")
    assert info.value.retryable
    sim.state.add_fault(method="POST", path="/v1/networks", status=503, count=1)
    with pytest.raises(ApiError) as info:
        await api.request("POST", "/networks", json_body={"name": "n", "cidr": "10.0.0.0/24"})
    assert not info.value.retryable


async def test_429_carries_the_wait(api: ApiClient, sim: RunningSimulator) -> None:
    sim.state.add_fault(
        method="GET", path="/v1/vps", status=429, count=1, headers={"Retry-After": "4"}
    )
    with pytest.raises(RateLimited) as info:
        await api.request("GET", "/vps")
    assert info.value.retry_after == pytest.approx(4.0)
    assert info.value.retryable


async def test_connection_reset_is_transport_error(api: ApiClient, sim: RunningSimulator) -> None:
    sim.state.add_fault(method="GET", path="/v1/vps", reset=True, count=1)
    with pytest.raises(TransportError) as info:
        await api.request("GET", "/vps")
    assert info.value.retryable  # GET is idempotent


async def test_connect_refused_is_retryable_for_any_method() -> None:
    async with ApiClient("http://127.0.0.1:9/v1", "k", timeout=2.0) as client:
        with pytest.raises(TransportError) as info:
            await client.request("POST", "/vps", json_body={})
    assert info.value.retryable  # nothing was sent


async def test_redirects_are_not_followed_and_token_stays_home(aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"stolen": True})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(other.make_url("/steal")))

    other_app = web.Application()
    other_app.router.add_get("/steal", elsewhere)
    other = await aiohttp_server(other_app)
    app = web.Application()
    app.router.add_get("/v1/vps", redirect)
    server = await aiohttp_server(app)
    async with ApiClient(str(server.make_url("/v1")), "secret-token") as client:
        with pytest.raises(ApiError) as info:
            await client.request("GET", "/vps")
    assert info.value.code == "redirect" and not info.value.retryable
    assert seen == []


def test_paths_stay_under_the_base_url() -> None:
    client = ApiClient("http://api.example/v1/", None)
    assert client.url("/vps") == "http://api.example/v1/vps"
    assert httpx.URL(client.url("//evil.example/x")).host == "api.example"
