"""The dashboard's routes on the receiver alone: the page and its files, ``GET /stats`` and
``POST /dry-run`` (a hook of the process that runs a worker; 501 without one)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from receiver.app import create_app
from receiver.exceptions import InvalidQuery
from receiver.keys import Keys
from receiver.settings import Settings
from receiver.stats import MAX_BUCKETS, StatsQuery
from receiver.ui import DRY_RUN, MAX_DRY_RUN_BODY, DryRunRefused
from tests.receiver.conftest import ADMIN_TOKEN, AUTH, Client, make_body, signed

KEYS = Keys()


async def test_the_dashboard_exists_only_with_the_admin_api(client: Client) -> None:
    for path in ("/ui", "/ui/ui.js", "/stats"):
        assert (await client.get(path)).status == 404, path
    assert (await client.post("/dry-run", json={"event": "x"}, headers=AUTH)).status == 404


async def test_the_page_loads_without_the_token_and_holds_nothing_secret(admin: Client) -> None:
    resp = await admin.get("/ui")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert 'data-dry-run="off"' in html  # no worker in this process
    assert ADMIN_TOKEN not in html
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    for name, kind in (("ui.js", "application/javascript"), ("ui.css", "text/css")):
        asset = await admin.get(f"/ui/{name}")
        assert asset.status == 200 and asset.content_type == kind, name
    for name in ("ui.html", "../app.py", "%2e%2e%2fapp.py", "nope.js"):
        assert (await admin.get(f"/ui/{name}")).status == 404, name


@pytest.mark.parametrize("path", ["/stats", "/dry-run"])
async def test_data_calls_need_the_token(admin: Client, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = await (
            admin.get(path, headers=headers)
            if path == "/stats"
            else admin.post(path, json={"event": "vps.created"}, headers=headers)
        )
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_stats_count_deliveries_and_runs_per_bucket(
    admin: Client, redis: aioredis.Redis
) -> None:
    body = make_body("vps.created", id="vps_1")
    assert (await admin.post("/webhooks", data=body, headers=signed(body))).status == 202
    assert (await admin.post("/webhooks", data=body, headers=signed(body))).status == 200
    other = make_body("vps.deleted", id="vps_2")
    assert (await admin.post("/webhooks", data=other, headers=signed(other))).status == 202
    for status in ("ok", "ok", "failed", "no_match"):
        await redis.xadd(KEYS.audit, {"kind": "run", "id": "evt_x", "status": status})
    await redis.xadd(KEYS.audit, {"kind": "step", "id": "evt_x", "status": "ok"})
    await redis.xadd(KEYS.audit, {"kind": "rejected", "reason": "signature", "count": "3"})

    resp = await admin.get("/stats", params={"bucket": "1m", "since": "10m"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["bucket"] == "1m" and doc["bucket_s"] == 60
    assert doc["truncated"] is False and doc["scanned_from"] is None
    assert 10 <= len(doc["buckets"]) <= 11
    starts = [b["start_ms"] for b in doc["buckets"]]
    assert all(s % 60_000 == 0 for s in starts) and starts == sorted(starts)
    total_deliveries: dict[str, int] = {}
    total_runs: dict[str, int] = {}
    for bucket in doc["buckets"]:
        for name, n in bucket["deliveries"].items():
            total_deliveries[name] = total_deliveries.get(name, 0) + n
        for name, n in bucket["runs"].items():
            total_runs[name] = total_runs.get(name, 0) + n
    assert total_deliveries == {"accepted": 2, "duplicate": 1, "rejected": 3}
    assert total_runs == {
        "ok": 2,
        "failed": 1,
        "deferred": 0,
        "throttled": 0,
        "stale": 0,
        "no_match": 1,
    }
    assert sum(doc["buckets"][-1]["deliveries"].values()) == 6  # all of it just now


async def test_stats_stop_reading_a_busy_stream_and_say_so(
    admin: Client, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("receiver.stats.MAX_SCAN", 4)
    monkeypatch.setattr("receiver.stats.BATCH", 2)
    for _ in range(7):
        await redis.xadd(KEYS.audit, {"kind": "run", "status": "ok"})
    doc = await (await admin.get("/stats", params={"since": "5m"}, headers=AUTH)).json()
    assert doc["truncated"] is True and doc["scanned_from"] is not None
    assert sum(b["runs"]["ok"] for b in doc["buckets"]) == 4  # the newest ones


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "soon"}, "bucket"),
        ({"bucket": "500ms"}, "bucket"),
        ({"bucket": "1s", "since": "7d"}, "bucket"),
        ({"since": "yesterday"}, "since"),
        ({"since": "1m", "until": "1h"}, "since"),
    ],
)
async def test_stats_refuse_bad_parameters(
    admin: Client, params: dict[str, str], field: str
) -> None:
    resp = await admin.get("/stats", params=params, headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == field


def test_stats_query_bounds() -> None:
    now = 1_700_000_000_000
    query = StatsQuery.parse(bucket="1m", since="24h", now_ms=now)
    assert (query.bucket_ms, query.until_ms, query.since_ms) == (60_000, now, now - 86_400_000)
    with pytest.raises(InvalidQuery):
        StatsQuery.parse(bucket="1s", since="1h", now_ms=now)  # 3601 buckets
    assert MAX_BUCKETS < 3600


async def test_dry_run_needs_a_worker_in_the_process(admin: Client) -> None:
    resp = await admin.post("/dry-run", json={"event": "vps.created"}, headers=AUTH)
    assert resp.status == 501
    error = (await resp.json())["error"]
    assert error["code"] == "not_available" and "tashooks serve" in error["message"]


DryRunClient = Callable[[Any], Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def hooked(
    aiohttp_client: DryRunClient, admin_settings: Settings
) -> tuple[Client, list[dict[str, Any]]]:
    """An admin app whose dry-run hook records what it was given."""
    seen: list[dict[str, Any]] = []

    async def hook(event: dict[str, Any]) -> dict[str, Any]:
        if event["event"] == "refuse.me":
            raise DryRunRefused("rules.yaml does not validate")
        seen.append(event)
        return {"event": event, "fired": ["r"], "rules": []}

    app = create_app(admin_settings)
    app[DRY_RUN] = hook
    return await aiohttp_client(app), seen


async def test_dry_run_validates_the_event_and_asks_the_hook(
    hooked: tuple[Client, list[dict[str, Any]]],
) -> None:
    client, seen = hooked
    page = await (await client.get("/ui")).text()
    assert 'data-dry-run="on"' in page
    before = time.time()
    resp = await client.post("/dry-run", json={"event": "vps.created"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["fired"] == ["r"]
    [event] = seen
    assert event["event"] == "vps.created" and event["data"] == {}
    assert event["timestamp"].endswith("Z") and time.time() - before < 60

    for body, field in (
        (b"{", "body"),
        (b"[1]", "body"),
        (json.dumps({"data": {}}).encode(), "event"),
        (json.dumps({"event": "x", "data": 3}).encode(), "data"),
        (json.dumps({"event": "x", "timestamp": "noon"}).encode(), "timestamp"),
    ):
        resp = await client.post("/dry-run", data=body, headers=AUTH)
        assert resp.status == 422, body
        assert (await resp.json())["error"]["details"]["field"] == field

    resp = await client.post("/dry-run", json={"event": "refuse.me"}, headers=AUTH)
    assert resp.status == 409
    assert "does not validate" in (await resp.json())["error"]["message"]

    big = json.dumps({"event": "x", "data": {"pad": "x" * MAX_DRY_RUN_BODY}}).encode()
    assert (await client.post("/dry-run", data=big, headers=AUTH)).status == 413
    gzipped = {**AUTH, "Content-Encoding": "gzip"}
    resp = await client.post("/dry-run", data=gzip.compress(big), headers=gzipped)
    assert resp.status == 413
    resp = await client.post("/dry-run", data=b"garbage", headers=gzipped)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    assert len(seen) == 1
    event = json.dumps({"event": "vps.gzipped"}).encode()
    resp = await client.post("/dry-run", data=gzip.compress(event), headers=gzipped)
    assert resp.status == 200, await resp.text()
    assert seen[-1]["event"] == "vps.gzipped"


async def test_the_new_calls_are_documented(admin: Client) -> None:
    doc = await (await admin.get("/openapi.json")).json()
    for path, method in (("/stats", "get"), ("/dry-run", "post")):
        op = doc["paths"][path][method]
        assert op["security"] == [{"adminToken": []}]
        assert "401" in op["responses"]
    assert "/ui" in doc["paths"] and "/ui/{name}" in doc["paths"]
