"""A flood of refused deliveries becomes a few aggregated audit records."""

from __future__ import annotations

import redis.asyncio as aioredis

from receiver.keys import Keys
from receiver.state import REJECTIONS
from tests.receiver.conftest import Client, make_body, signed


async def test_rejections_are_aggregated(client: Client, redis: aioredis.Redis) -> None:
    body = make_body()
    for _ in range(50):
        resp = await client.post("/webhooks", data=body, headers={"X-Signature": "00"})
        assert resp.status == 401
    bad = b'{"event": "x", "timestamp": "nope", "data": {}}'
    for _ in range(3):
        assert (await client.post("/webhooks", data=bad, headers=signed(bad))).status == 422
    assert (await client.post("/webhooks", data=body, headers=signed(body))).status == 202
    assert client.server.app is not None
    await client.server.app[REJECTIONS].flush()
    entries = await redis.xrange(Keys().audit)
    records = [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]
    rejected = {r["reason"]: r for r in records if r["kind"] == "rejected"}
    assert set(rejected) == {"unauthorized", "invalid:timestamp"}
    assert rejected["unauthorized"]["count"] == "50"
    assert rejected["invalid:timestamp"]["count"] == "3"
    assert rejected["unauthorized"]["source"] == "127.0.0.1"
    assert int(rejected["unauthorized"]["first_ms"]) <= int(rejected["unauthorized"]["last_ms"])
    assert len(records) == 3  # two aggregates and the accepted delivery


async def test_rejections_survive_a_failed_flush(client: Client, redis_server) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/webhooks", data=b"{}", headers={"X-Signature": "0"})).status == 401
    assert client.server.app is not None
    rejections = client.server.app[REJECTIONS]
    redis_server.stop()
    try:
        await rejections.flush()
        assert sum(c.count for c in rejections.pending.values()) == 1
    finally:
        redis_server.start()
