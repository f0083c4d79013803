"""Fixtures: the simulator and the Slack stub on real loopback ports, and a webhook sink."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tashooks.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tashooks.slackstub import RunningStub, start_slack_stub

API_KEY = "sim-test-key"

SimFactory = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start simulators with fast defaults (overridable); all closed at the end."""
    started: list[RunningSimulator] = []

    async def make(**overrides: Any) -> RunningSimulator:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "boot_delay": 0.05,
            "ready_delay": 0.1,
            "delivery_backoff": 0.02,
            "delivery_timeout": 2.0,
        }
        options.update(overrides)
        sim = await start_simulator(SimulatorConfig(**options))
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.close()


@pytest.fixture
async def sim(make_sim: SimFactory) -> RunningSimulator:
    return await make_sim()


@pytest.fixture
async def api(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client for ``sim``'s ``/v1``."""
    async with httpx.AsyncClient(
        base_url=sim.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    ) as client:
        yield client


@pytest.fixture
async def control(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """An unauthenticated client for ``sim``'s ``/_sim`` controls."""
    async with httpx.AsyncClient(base_url=sim.root_url + "/_sim", timeout=5) as client:
        yield client


@dataclass
class Delivery:
    """One webhook request as the receiving end saw it."""

    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Inbox:
    """A webhook receiver: answers ``statuses`` in turn (then 200) and keeps what came."""

    url: str = ""
    received: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, event: str, status: str | None = None) -> Delivery:
        """The first delivery of ``event`` (with ``data.status`` ``status`` if given)."""

        def find() -> Delivery | None:
            for delivery in self.received:
                doc = delivery.json
                if doc["event"] == event and (status is None or doc["data"]["status"] == status):
                    return delivery
            return None

        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    def events(self) -> list[str]:
        return [d.json["event"] for d in self.received]


@pytest.fixture
async def inbox(aiohttp_server: AiohttpServer) -> Inbox:
    box = Inbox()

    async def receive(request: web.Request) -> web.Response:
        box.received.append(Delivery(await request.read(), dict(request.headers)))
        async with box.arrived:
            box.arrived.notify_all()
        status = box.statuses.pop(0) if box.statuses else 200
        headers = {"Retry-After": "0"} if status in (429, 503) else None
        return web.json_response({"status": "seen"}, status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    server = await aiohttp_server(app)
    box.url = str(server.make_url("/webhooks"))
    return box


@pytest.fixture
async def slack() -> AsyncIterator[RunningStub]:
    stub = await start_slack_stub()
    yield stub
    await stub.close()
