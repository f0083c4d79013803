"""``GET /events/stream``: audit records live as Server-Sent Events, resumable."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from receiver import sse
from receiver.app import create_app
from receiver.settings import load_settings
from tashooks.redisproc import RedisProcess, free_port
from tests.receiver.conftest import ADMIN_TOKEN as TOKEN
from tests.receiver.conftest import AUTH, SECRET, Client
from tests.receiver.test_admin import deliver


async def next_event(resp: aiohttp.ClientResponse, max_wait: float = 5.0) -> dict[str, Any]:
    """The next SSE event (comments skipped): its id, event and parsed data."""
    fields: dict[str, Any] = {}
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), max_wait)).decode()
        if line in ("\n", ""):
            if fields:
                return fields
            if line == "":
                raise AssertionError("the stream ended")
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.rstrip("\n").partition(": ")
        fields[name] = json.loads(value) if name == "data" else value


async def next_comment(resp: aiohttp.ClientResponse, max_wait: float = 5.0) -> str:
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), max_wait)).decode()
        if line.startswith(":"):
            return line.strip()


async def open_stream(client: Client, **params: str) -> aiohttp.ClientResponse:
    headers = dict(AUTH)
    if "last_event_id_header" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id_header")
    resp = await client.get("/events/stream", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await next_comment(resp) == ": connected"
    return resp


async def test_new_delivery_arrives_live_and_resume_loses_nothing(admin: Client) -> None:
    await deliver(admin, "vps.created", id="before")  # history: not sent to a new stream
    resp = await open_stream(admin)
    first = await deliver(admin, "vps.created", id="vps_1")
    event = await next_event(resp)
    assert event["event"] == "delivery"
    assert event["data"]["id"] == first and event["data"]["status"] == "accepted"
    assert event["id"] == event["data"]["stream_id"]
    assert event["data"]["event"]["data"] == {"id": "vps_1"}
    resp.close()

    missed = [await deliver(admin, "vps.created", id=f"vps_{n}") for n in (2, 3)]
    resp = await open_stream(admin, last_event_id_header=event["id"])
    got = [await next_event(resp), await next_event(resp)]
    assert [e["data"]["id"] for e in got] == missed
    later = await deliver(admin, "vps.created", id="vps_4")
    assert (await next_event(resp))["data"]["id"] == later  # no repeat in between
    resp.close()

    # The query parameter works as the header does.
    resp = await open_stream(admin, last_event_id=got[0]["id"])
    assert [(await next_event(resp))["data"]["id"] for _ in range(2)] == [missed[1], later]
    resp.close()


async def test_type_filter(admin: Client) -> None:
    resp = await open_stream(admin, type="kubernetes.*")
    await deliver(admin, "vps.created", id="vps_1")
    cluster = await deliver(admin, "kubernetes.ready", id="k8s_1")
    event = await next_event(resp)
    assert event["data"]["id"] == cluster
    resp.close()


async def test_heartbeat_when_quiet(admin: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_S", 0.2)
    resp = await open_stream(admin)
    assert await next_comment(resp, max_wait=3) == ": heartbeat"
    resp.close()


async def test_bad_last_event_id_is_422(admin: Client) -> None:
    resp = await admin.get("/events/stream", headers={**AUTH, "Last-Event-ID": "nope"})
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == "last_event_id"


async def test_stream_connection_closed_when_client_goes(
    admin: Client, redis: aioredis.Redis
) -> None:
    async def clients() -> int:
        return len(await redis.client_list())

    await deliver(admin)  # the app's own pool has its connection now
    base = await clients()
    resp = await open_stream(admin)
    await deliver(admin)
    await next_event(resp)
    assert await clients() > base
    resp.close()
    for _ in range(100):
        if await clients() <= base:
            break
        await asyncio.sleep(0.05)
    assert await clients() <= base


async def test_open_stream_does_not_hold_up_shutdown(admin: Client) -> None:
    resp = await open_stream(admin)
    started = time.monotonic()
    await admin.close()
    assert time.monotonic() - started < 5
    resp.close()


async def test_last_event_id_ahead_of_the_stream_follows_from_now(admin: Client) -> None:
    """An id the stream has not reached (Redis lost its data, say) is not waited for."""
    await deliver(admin, "vps.created", id="before")
    future = f"{int(time.time() * 1000) + 3_600_000}-0"
    resp = await open_stream(admin, last_event_id_header=future)
    assert "ahead of the audit stream" in await next_comment(resp)
    later = await deliver(admin, "vps.created", id="vps_after")
    assert (await next_event(resp))["data"]["id"] == later
    resp.close()


async def test_stream_rides_out_a_redis_restart(
    aiohttp_client: Callable[[Any], Awaitable[Client]], tmp_path: Any
) -> None:
    """Redis goes away under a live stream: it says so, stays open, and goes on from its
    last record when Redis is back."""
    server = RedisProcess(port=free_port()).start()
    try:
        settings = load_settings(
            redis_url=server.url, webhook_secret=SECRET, data_dir=tmp_path, admin_token=TOKEN
        )
        client = await aiohttp_client(create_app(settings))
        resp = await open_stream(client)
        first = await deliver(client, "vps.created", id="vps_1")
        assert (await next_event(resp))["data"]["id"] == first
        server.stop()
        assert "Redis is unavailable" in await next_comment(resp, max_wait=10)
        server.start()
        assert await next_comment(resp, max_wait=10) == ": Redis is back"
        second = await deliver(client, "vps.deleted", id="vps_1")
        assert (await next_event(resp))["data"]["id"] == second
        resp.close()
    finally:
        server.close()
