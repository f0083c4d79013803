"""POST /webhooks: every row of SPEC's answer table, in its order of checks."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import signal
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver.app import create_app
from receiver.jobs import deserialize
from receiver.keys import Keys
from receiver.settings import Settings, SettingsError, load_settings
from receiver.signatures import sign
from tashooks.redisproc import RedisProcess, free_port
from tests.receiver.conftest import SECRET, Client, make_body, signed

KEYS = Keys()


async def queued_ids(redis: aioredis.Redis) -> list[str]:
    return [m.decode() for m in await redis.zrange(KEYS.queue, 0, -1)]


async def test_accepted_is_stored_queued_and_audited(client: Client, redis: aioredis.Redis) -> None:
    body = make_body()
    resp = await client.post("/webhooks", data=body, headers=signed(body))
    assert resp.status == 202
    answer = await resp.json()
    assert answer["status"] == "accepted" and answer["id"].startswith("evt_")
    assert await queued_ids(redis) == [answer["id"]]
    job = deserialize(await redis.get(KEYS.job(answer["id"])))
    assert job["f"] == "process_event"
    assert job["a"][0]["event"] == json.loads(body)
    entries = await redis.xrange(KEYS.audit)
    assert len(entries) == 1
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields["status"] == "accepted" and fields["id"] == answer["id"]
    assert fields["type"] == "vps.created" and fields["resource"] == "vps_abc123"


async def test_too_large_is_413_before_signature(client: Client, redis: aioredis.Redis) -> None:
    body = make_body(blob="x" * 5000)
    resp = await client.post("/webhooks", data=body, headers={"X-Signature": "bad"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b"x" * 1000

    resp = await client.post("/webhooks", data=chunks(), headers={"X-Signature": "bad"})
    assert resp.status == 413
    assert await queued_ids(redis) == []


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda body: {},
        lambda body: {"X-Signature": ""},
        lambda body: {"X-Signature": sign(b"other", SECRET)},
        lambda body: {"X-Signature": sign(body, "wrong")},
    ],
    ids=["missing", "empty", "other-body", "wrong-secret"],
)
async def test_bad_signature_is_401(
    client: Client, redis: aioredis.Redis, make_headers: Callable[[bytes], dict[str, str]]
) -> None:
    body = make_body()
    headers = make_headers(body)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status == 401
    text = await resp.text()
    assert json.loads(text)["error"]["code"] == "unauthorized"
    assert sign(body, SECRET) not in text  # the expected digest never leaks
    assert await queued_ids(redis) == []


async def test_signature_checked_before_validation(client: Client) -> None:
    resp = await client.post("/webhooks", data=b"not json", headers={"X-Signature": "00"})
    assert resp.status == 401


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "body"),
        ({"timestamp": "2024-01-15T10:30:00Z", "data": {}}, "event"),
        ({"event": "vps.created", "timestamp": "yesterday", "data": {}}, "timestamp"),
        ({"event": "vps.created", "timestamp": "2024-01-15T10:30:00Z", "data": "x"}, "data"),
    ],
)
async def test_invalid_body_is_422_with_field(client: Client, doc: Any, field: str) -> None:
    if isinstance(doc, dict) and field != "timestamp" and "timestamp" in doc:
        doc["timestamp"] = datetime.now(UTC).isoformat()
    body = json.dumps(doc).encode()
    resp = await client.post("/webhooks", data=body, headers=signed(body))
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field


@pytest.mark.parametrize("offset", [timedelta(days=8), -timedelta(minutes=6)])
async def test_timestamp_out_of_window_is_422(
    client: Client, redis: aioredis.Redis, offset: timedelta
) -> None:
    ts = (datetime.now(UTC) - offset).isoformat()
    body = json.dumps({"event": "vps.created", "timestamp": ts, "data": {}}).encode()
    resp = await client.post("/webhooks", data=body, headers=signed(body))
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == "timestamp"
    assert await queued_ids(redis) == []


async def test_redelivery_is_duplicate_even_reserialised(
    client: Client, redis: aioredis.Redis
) -> None:
    body = make_body()
    first = await (await client.post("/webhooks", data=body, headers=signed(body))).json()
    again = json.dumps(json.loads(body), indent=2, sort_keys=True).encode() + b"\n"
    resp = await client.post("/webhooks", data=again, headers=signed(again))
    assert resp.status == 200
    assert await resp.json() == {"status": "duplicate", "id": first["id"]}
    assert await queued_ids(redis) == [first["id"]]
    statuses = [e[1][b"status"] for e in await redis.xrange(KEYS.audit)]
    assert statuses == [b"accepted", b"duplicate"]


async def test_same_delivery_ten_times_at_once(client: Client, redis: aioredis.Redis) -> None:
    body = make_body()
    responses = await asyncio.gather(
        *(client.post("/webhooks", data=body, headers=signed(body)) for _ in range(10))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 9 + [202]
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    assert await queued_ids(redis) == list(ids)


async def test_unknown_event_type_is_accepted(client: Client) -> None:
    body = make_body("network.created", id="net_1")
    resp = await client.post("/webhooks", data=body, headers=signed(body))
    assert resp.status == 202


async def test_redis_unreachable_is_503_and_nothing_acknowledged(
    aiohttp_client: Callable[[Any], Awaitable[Client]], tmp_path: Any
) -> None:
    server = RedisProcess(port=free_port()).start()
    try:
        settings = load_settings(redis_url=server.url, webhook_secret=SECRET, data_dir=tmp_path)
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/readyz")).status == 200
        server.stop()
        body = make_body()
        resp = await client.post("/webhooks", data=body, headers=signed(body))
        assert resp.status == 503
        assert resp.headers["Retry-After"].isdigit()
        assert (await resp.json())["error"]["code"] == "unavailable"
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        metrics = await (await client.get("/metrics")).text()
        assert 'outcome="unavailable"' in metrics
        assert '{event_type="vps.created",outcome="unavailable"} 1.0' in metrics
        server.start()
        resp = await client.post("/webhooks", data=body, headers=signed(body))
        assert resp.status == 202  # not a duplicate: the 503 stored nothing
    finally:
        server.close()


async def test_a_hung_redis_is_503_and_the_redelivery_finds_what_it_stored(
    aiohttp_client: Callable[[Any], Awaitable[Client]], tmp_path: Any
) -> None:
    """Redis frozen (SIGSTOP) past the write timeout: 503, which says the delivery may have
    been stored (Redis may still run the script it had read when it resumes); either way
    the redelivery stores it exactly once: 202 if it was not, 200 duplicate if it was."""
    server = RedisProcess(port=free_port()).start()
    try:
        settings = load_settings(redis_url=server.url, webhook_secret=SECRET, data_dir=tmp_path)
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/readyz")).status == 200
        assert server.proc is not None
        body = make_body(id="vps_hung")
        server.proc.send_signal(signal.SIGSTOP)
        try:
            resp = await client.post("/webhooks", data=body, headers=signed(body))
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert resp.status == 503
        message = (await resp.json())["error"]["message"]
        assert "retry" in message and "duplicate" in message
        for _ in range(50):  # the connection was dropped; the app reconnects
            resp = await client.post("/webhooks", data=body, headers=signed(body))
            if resp.status != 503:
                break
            await asyncio.sleep(0.1)
        answer = await resp.json()
        assert (resp.status, answer["status"]) in {(202, "accepted"), (200, "duplicate")}
        check = aioredis.Redis.from_url(server.url)
        try:
            assert await queued_ids(check) == [answer["id"]]  # stored once
        finally:
            await check.aclose()
    finally:
        server.close()


async def test_secrets_rotation_accepts_both(
    aiohttp_client: Callable[[Any], Awaitable[Client]], settings: Settings
) -> None:
    app = create_app(load_settings(redis_url=settings.redis_url, webhook_secret="old, new"))
    client = await aiohttp_client(app)
    for secret in ("old", "new"):
        body = make_body(id=f"vps_{secret}")
        resp = await client.post("/webhooks", data=body, headers=signed(body, secret))
        assert resp.status == 202


@pytest.mark.parametrize("secret", [None, "", " , "])
def test_refuses_to_start_without_secret(secret: str | None) -> None:
    with pytest.raises(SettingsError, match="TASHOOKS_WEBHOOK_SECRET"):
        create_app(load_settings(webhook_secret=secret))


async def test_health_and_metrics(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = make_body()
    await client.post("/webhooks", data=body, headers=signed(body))
    metrics = await (await client.get("/metrics")).text()
    assert 'tashooks_deliveries_total{event_type="vps.created",outcome="accepted"} 1.0' in metrics


async def test_slow_body_is_refused(
    client: Client, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from receiver import views

    monkeypatch.setattr(views, "BODY_TIMEOUT_S", 0.3)
    body = make_body()

    async def trickle() -> Any:
        yield body[:5]
        await asyncio.sleep(2)
        yield body[5:]

    resp = await client.post("/webhooks", data=trickle(), headers=signed(body))
    assert resp.status == 408
    assert (await resp.json())["error"]["code"] == "request_timeout"
    assert await queued_ids(redis) == []


_GZIPPED = gzip.compress(make_body())


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"garbage"),
        ("gzip", _GZIPPED[: len(_GZIPPED) // 2]),  # cut short
        ("deflate", b"garbage"),
        ("deflate", zlib.compress(b'{"event": "x"}')[:-3]),
    ],
    ids=["gzip-garbage", "gzip-truncated", "deflate-garbage", "deflate-truncated"],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
async def test_body_not_valid_for_its_encoding_is_400_not_500(
    client: Client,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    encoding: str,
    data: bytes,
    chunked: bool,
) -> None:
    async def chunks() -> Any:
        yield data

    with caplog.at_level(logging.WARNING):
        resp = await client.post(
            "/webhooks",
            data=chunks() if chunked else data,
            headers={"Content-Encoding": encoding, "X-Signature": sign(data, SECRET)},
        )
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "bad_request"
    assert f"not valid {encoding}" in error["message"]
    assert "uncompressed without a Content-Encoding" in error["message"]
    assert error["details"] == {"content_encoding": encoding}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert await queued_ids(redis) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'tashooks_deliveries_total{event_type="",outcome="bad_encoding"} 1.0' in metrics


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("GZIP", gzip.compress), ("deflate", zlib.compress)],
)
async def test_a_compressed_body_is_checked_decoded(
    client: Client, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = make_body(id=f"vps_{encoding}")
    headers = {**signed(body), "Content-Encoding": encoding}
    resp = await client.post("/webhooks", data=compress(body), headers=headers)
    assert resp.status == 202, await resp.text()
    resp = await client.post("/webhooks", data=body, headers={**headers, "Content-Encoding": ""})
    assert resp.status == 200, await resp.text()  # the same event: signed over the decoded body


async def test_a_compressed_body_over_the_limit_is_413(client: Client) -> None:
    body = make_body(blob="x" * 100_000)  # settings.max_body is 4096; compressed it is less
    headers = {**signed(body), "Content-Encoding": "gzip"}
    resp = await client.post("/webhooks", data=gzip.compress(body), headers=headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress"])
async def test_an_unsupported_encoding_is_415(
    client: Client, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    with caplog.at_level(logging.WARNING):
        resp = await client.post(
            "/webhooks", data=b"\x00\x01", headers={"Content-Encoding": encoding}
        )
    assert resp.status == 415, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert "send the body uncompressed, or compressed with gzip or deflate" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_broken_json_is_422_not_500(client: Client) -> None:
    for data in (b'{"a": "\\ud800"}', b"[" * 1500 + b"]" * 1500, b'{"a": NaN}'):
        body = (
            b'{"event": "x", "timestamp": "'
            + datetime.now(UTC).isoformat().encode()
            + b'", "data": '
            + data
            + b"}"
        )
        resp = await client.post("/webhooks", data=body, headers=signed(body))
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["details"]["field"] in ("body", "data")


async def test_dedup_outlives_the_future_skew(client: Client, redis: aioredis.Redis) -> None:
    body = make_body()
    await client.post("/webhooks", data=body, headers=signed(body))
    [key] = [k async for k in redis.scan_iter(match=f"{KEYS.ns}:dedup:*")]
    # An event may be up to 5 minutes ahead: it must be remembered until it is too old.
    assert await redis.ttl(key) >= 7 * 86400 + 300 - 5


async def test_concurrent_deliveries_share_round_trips(
    client: Client, redis: aioredis.Redis
) -> None:
    from receiver.state import INGESTOR

    assert client.server.app is not None
    ingestor = client.server.app[INGESTOR]
    before = ingestor.batches
    bodies = [make_body(id=f"vps_{n}") for n in range(60)] + [make_body(id="vps_0")]
    responses = await asyncio.gather(
        *(client.post("/webhooks", data=b, headers=signed(b)) for b in bodies)
    )
    statuses = sorted(r.status for r in responses)
    # The repeat of vps_0 (same content, same timestamp second or not) is either a duplicate
    # of its twin in the same batch or a new event with another timestamp.
    assert statuses.count(202) >= 60 and set(statuses) <= {200, 202}
    assert len(await queued_ids(redis)) == statuses.count(202)
    assert ingestor.batches - before < 30  # many deliveries per round trip


def test_job_bytes_match_arqs_format() -> None:
    from arq.jobs import deserialize_job_raw, serialize_job

    from receiver import jobs

    canonical = b'{"data":{"id":"x"},"event":"a.b","timestamp":"2024-01-15T10:30:00Z"}'
    built = jobs.process_event_job("evt_1", canonical, 1700000000123, 1705314600000)
    reference = serialize_job(
        jobs.PROCESS_EVENT,
        (jobs.event_payload("evt_1", json.loads(canonical), 1700000000123, 1705314600000),),
        {},
        None,
        1700000000123,
        serializer=jobs.serialize,
    )
    assert json.loads(built) == json.loads(reference)
    assert deserialize_job_raw(built, deserializer=jobs.deserialize)[0] == "process_event"


def test_an_outage_is_logged_once_per_period_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from receiver.views import _OutageLog

    outage = _OutageLog(every_s=0.2)
    with caplog.at_level(logging.ERROR, logger="tashooks.receiver"):
        for _ in range(5):
            outage.log("Connection refused")
        time.sleep(0.25)
        outage.log("Connection refused")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Redis unavailable, delivery not acknowledged: Connection refused",
        "Redis unavailable, delivery not acknowledged: Connection refused "
        "(and 4 more since the last report)",
    ]
