"""The admin API on the receiver alone: auth, listing filters and pages, event detail,
replay and dead letters (no worker runs here: outcomes are written as the worker would)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver.deadletters import DeadLetters
from receiver.keys import Keys
from receiver.state import REJECTIONS
from tests.receiver.conftest import ADMIN_TOKEN, AUTH, Client, make_body, signed

KEYS = Keys()


async def deliver(client: Client, event: str = "vps.created", **data: Any) -> str:
    body = make_body(event, **data)
    resp = await client.post("/webhooks", data=body, headers=signed(body))
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["id"])


async def finish(redis: aioredis.Redis, event_id: str, **runs: str) -> None:
    """What the worker leaves behind: its job gone, the latest run of each rule kept."""
    await redis.delete(KEYS.job(event_id))
    for rule, status in runs.items():
        doc = {"rule": rule, "status": status, "started_ms": int(time.time() * 1000)}
        await redis.hset(KEYS.event(event_id), f"run:{rule}", json.dumps(doc))


async def get(client: Client, path: str, expect: int = 200, **params: Any) -> Any:
    resp = await client.get(path, params=params, headers=AUTH)
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def test_admin_routes_404_without_a_token(client: Client) -> None:
    for path in ("/events", "/events/stream", "/deadletters", "/events/evt_x"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404, path
    assert (await client.post("/events/evt_x/replay", headers=AUTH)).status == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
async def test_admin_routes_refuse_a_missing_or_wrong_token(
    admin: Client, headers: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/events"),
        ("GET", "/events/stream"),
        ("GET", "/events/evt_x"),
        ("POST", "/events/evt_x/replay"),
        ("GET", "/deadletters"),
        ("POST", "/deadletters/dl_x/retry"),
        ("DELETE", "/deadletters/dl_x"),
    ):
        resp = await admin.request(method, path, headers=headers)
        assert resp.status == 401, (method, path)
        body = await resp.json()
        assert body["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_events_filters(admin: Client, redis: aioredis.Redis) -> None:
    created = await deliver(admin, "vps.created", id="vps_1", name="web-1")
    stopped = await deliver(admin, "vps.status_changed", id="vps_1", status="stopped")
    cluster = await deliver(admin, "kubernetes.ready", id="k8s_1")
    nothing = await deliver(admin, "template.deployed", id="tpl_1")
    body = make_body("vps.created", id="vps_1", name="web-1")
    await admin.post("/webhooks", data=body, headers=signed(body))  # a new event
    await admin.post("/webhooks", data=body, headers=signed(body))  # ...and its duplicate
    await finish(redis, created, notify="ok", audit="throttled")
    await finish(redis, stopped, notify="failed", audit="ok")
    await finish(redis, nothing)

    page = await get(admin, "/events")
    ids = [item["id"] for item in page["data"]]
    assert len(ids) == 6 and page["next_cursor"] is None
    assert ids[2:] == [nothing, cluster, stopped, created]  # newest first
    assert page["data"][0]["status"] == "duplicate" and page["data"][0]["id"] == ids[1]
    assert page["data"][-1]["rules"] == {"notify": "ok", "audit": "throttled"}
    assert page["data"][-1]["resource"] == "vps_1"

    def ids_of(page: dict[str, Any]) -> list[str]:
        return [item["id"] for item in page["data"]]

    assert ids_of(await get(admin, "/events", type="vps.*")) == [ids[0], ids[1], stopped, created]
    assert ids_of(await get(admin, "/events", type="kubernetes.ready")) == [cluster]
    assert ids_of(await get(admin, "/events", resource="k8s_1")) == [cluster]
    assert ids_of(await get(admin, "/events", status="ok")) == [created]
    assert ids_of(await get(admin, "/events", status="failed")) == [stopped]
    assert ids_of(await get(admin, "/events", status="no_match")) == [nothing]
    assert ids_of(await get(admin, "/events", status="pending")) == [ids[1], cluster]
    assert ids_of(await get(admin, "/events", status="duplicate")) == [ids[0]]
    assert len(ids_of(await get(admin, "/events", status="accepted"))) == 5
    assert ids_of(await get(admin, "/events", status="ok,failed")) == [stopped, created]
    assert ids_of(await get(admin, "/events", type="vps.*", status="pending")) == [ids[1]]
    assert len(ids_of(await get(admin, "/events", since="1h"))) == 6
    assert ids_of(await get(admin, "/events", until="1h")) == []
    assert ids_of(await get(admin, "/events", since="2000-01-01T00:00:00Z", until="1m")) == []
    assert len(ids_of(await get(admin, "/events", until="2999-01-01T00:00:00Z"))) == 6


async def test_bad_parameters_are_422_with_the_field(admin: Client) -> None:
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "done"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-01-01"}, "until"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "99999999999999999999-0"}, "cursor"),  # past the largest stream id
        ({"since": "1m", "until": "1h"}, "since"),
    ):
        body = await get(admin, "/events", 422, **params)
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["details"]["field"] == field, params
    body = await get(admin, "/deadletters", 422, cursor="nope")
    assert body["error"]["details"]["field"] == "cursor"


async def test_out_of_range_filters_are_clamped_never_an_outage(admin: Client) -> None:
    """Times before the epoch are the start of the stream, 0-0 the very start: Redis would
    refuse them as stream ids (and the answer was a false 503)."""
    event_id = await deliver(admin)
    for params, expected in (
        ({"cursor": "0-0"}, []),
        ({"cursor": "00-000"}, []),
        ({"until": "99999d"}, []),
        ({"until": "0001-01-01T00:00:00Z"}, []),
        ({"since": "0001-01-01T00:00:00Z"}, [event_id]),
        ({"since": "99999d"}, [event_id]),
        ({"since": "9" * 400 + "d"}, [event_id]),  # an infinite duration
    ):
        body = await get(admin, "/events", **params)
        assert [item["id"] for item in body["data"]] == expected, params
        assert body["next_cursor"] is None


async def test_stats_names_the_field_at_fault(admin: Client) -> None:
    body = await get(admin, "/stats", 422, until="99999d")
    assert body["error"]["details"]["field"] == "until"
    assert "give a later until" in body["error"]["message"]
    body = await get(admin, "/stats", 422, since="1m", until="1h")
    assert body["error"]["details"]["field"] == "since"
    body = await get(admin, "/stats", since="99999d", until="99999d", bucket="1d")
    assert body["since"].startswith("1970-01-01")


async def test_pages_follow_the_cursor_without_gaps_or_repeats(admin: Client) -> None:
    sent = [await deliver(admin, "vps.created", id=f"vps_{n}") for n in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await get(admin, "/events", **params)
        pages += 1
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Arrivals between pages do not shift the pages.
        await deliver(admin, "vps.created", id=f"late_{pages}")
    assert seen == list(reversed(sent))
    assert pages == 3


async def test_rejected_deliveries_listed_when_asked(admin: Client) -> None:
    body = make_body()
    await admin.post("/webhooks", data=body, headers=signed(body, "wrong"))
    await admin.post("/webhooks", data=body, headers=signed(body, "wrong"))
    await deliver(admin)
    await admin.app[REJECTIONS].flush()
    assert all(i["delivery"] == "accepted" for i in (await get(admin, "/events"))["data"])
    [rejected] = (await get(admin, "/events", status="rejected"))["data"]
    assert rejected["status"] == "rejected" and rejected["reason"] == "unauthorized"
    assert rejected["count"] == 2 and rejected["first_at"] <= rejected["last_at"]
    both = (await get(admin, "/events", status="rejected,accepted"))["data"]
    assert [i["delivery"] for i in both] == ["rejected", "accepted"]


async def test_event_detail_and_404(admin: Client, redis: aioredis.Redis) -> None:
    event_id = await deliver(admin, "vps.created", id="vps_9", name="web-9")
    event = await get(admin, f"/events/{event_id}")
    assert event["id"] == event_id and event["status"] == "pending"
    assert event["event"]["data"] == {"id": "vps_9", "name": "web-9"}
    assert event["type"] == "vps.created" and event["resource"] == "vps_9"
    assert event["runs"] == [] and event["replays"] == 0
    await finish(redis, event_id, notify="ok")
    event = await get(admin, f"/events/{event_id}")
    assert event["status"] == "ok" and [r["rule"] for r in event["runs"]] == ["notify"]
    body = await get(admin, "/events/evt_01NOPE", 404)
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"] == "no event evt_01NOPE in the last 7d"


async def test_replay_queues_the_event_again(admin: Client, redis: aioredis.Redis) -> None:
    event_id = await deliver(admin, "vps.created", id="vps_1")
    await finish(redis, event_id, notify="failed")
    resp = await admin.post(f"/events/{event_id}/replay", headers=AUTH)
    assert resp.status == 202
    assert await resp.json() == {
        "status": "queued",
        "job_id": f"{event_id}:replay:1",
        "event_id": event_id,
    }
    job = json.loads(await redis.get(KEYS.job(f"{event_id}:replay:1")))
    assert job["f"] == "process_event"
    [payload] = job["a"]
    assert payload["id"] == event_id and payload["replay"] == 1
    assert payload["event"]["data"] == {"id": "vps_1"} and payload["ts_ms"] > 0
    assert await redis.zscore(KEYS.queue, f"{event_id}:replay:1") is not None
    # The event now shows as pending (its replay's job is queued), runs forgotten.
    event = await get(admin, f"/events/{event_id}")
    assert event["status"] == "pending" and event["runs"] == [] and event["replays"] == 1
    resp = await admin.post(f"/events/{event_id}/replay", headers=AUTH)
    assert (await resp.json())["job_id"] == f"{event_id}:replay:2"
    resp = await admin.post("/events/evt_01NOPE/replay", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_deadletters_list_retry_delete(admin: Client, redis: aioredis.Redis) -> None:
    event_id = await deliver(admin, "vps.created", id="vps_1")
    await finish(redis, event_id, notify="failed")
    store = DeadLetters(redis, KEYS)
    raw = json.loads(make_body("vps.created", id="vps_1"))
    # One dead letter per run (event and rule): five rules of the event failed.
    dl_ids = [
        await store.add({"event_id": event_id, "event": raw, "rule": f"rule{n}", "error": "e"})
        for n in range(5)
    ]
    # Newest first (ids made in the same millisecond in id order), in pages.
    listed = (await get(admin, "/deadletters"))["data"]
    everything = [d["id"] for d in listed]
    assert sorted(everything) == sorted(dl_ids)
    times = [d["failed_at_ms"] for d in listed]
    assert times == sorted(times, reverse=True)
    page = await get(admin, "/deadletters", limit=2)
    page2 = await get(admin, "/deadletters", limit=2, cursor=page["next_cursor"])
    page3 = await get(admin, "/deadletters", limit=2, cursor=page2["next_cursor"])
    paged = [d["id"] for p in (page, page2, page3) for d in p["data"]]
    assert paged == everything and page3["next_cursor"] is None
    dl_ids = everything[::-1]  # oldest first
    rule = {d["id"]: d["rule"] for d in listed}[dl_ids[0]]

    resp = await admin.post(f"/deadletters/{dl_ids[0]}/retry", headers=AUTH)
    assert resp.status == 202
    job_id = f"{event_id}:{rule}:retry:1"
    assert (await resp.json())["job_id"] == job_id
    job = json.loads(await redis.get(KEYS.job(job_id)))
    assert job["f"] == "run_rule" and job["a"][1:] == [rule, {}]
    assert job["a"][0]["id"] == event_id and job["a"][0]["event"] == raw
    assert await redis.zscore(KEYS.queue, job_id) is not None
    assert await store.get(dl_ids[0]) is None
    assert (await get(admin, f"/events/{event_id}"))["status"] == "pending"
    resp = await admin.post(f"/deadletters/{dl_ids[0]}/retry", headers=AUTH)
    assert resp.status == 404

    assert (await admin.delete(f"/deadletters/{dl_ids[1]}", headers=AUTH)).status == 204
    assert (await admin.delete(f"/deadletters/{dl_ids[1]}", headers=AUTH)).status == 404
    assert await store.size() == 3
    # The run index holds the three that are left, not the retried or deleted ones.
    assert sorted(await store.of_event(event_id)) == sorted(dl_ids[2:])
    assert await redis.hlen(KEYS.deadletter_runs) == 3


async def test_deadletter_without_a_rule_is_retried_as_a_replay(
    admin: Client, redis: aioredis.Redis
) -> None:
    event_id = await deliver(admin, "vps.created", id="vps_1")
    store = DeadLetters(redis, KEYS)
    raw = json.loads(make_body("vps.created", id="vps_1"))
    dl_id = await store.add({"event_id": event_id, "event": raw, "rule": None, "error": "x"})
    resp = await admin.post(f"/deadletters/{dl_id}/retry", headers=AUTH)
    assert (await resp.json())["job_id"] == f"{event_id}:replay:1"
    job = json.loads(await redis.get(KEYS.job(f"{event_id}:replay:1")))
    assert job["f"] == "process_event" and job["a"][0]["replay"] == 1
    assert await store.of_event(event_id) == ()
    assert await redis.hlen(KEYS.deadletter_runs) == 0


async def test_a_replay_drops_what_of_the_event_still_waits_in_the_queue(
    admin: Client, redis: aioredis.Redis
) -> None:
    """Replaying an event no worker has taken yet runs its rules once, not twice: the first
    job (and an earlier replay still waiting) leave the queue with the replay's queueing;
    one a worker is running stays (it finishes; the replay then starts afresh)."""
    waiting = await deliver(admin, "vps.created", id="vps_1")
    running = await deliver(admin, "vps.created", id="vps_2")
    await redis.set(KEYS.in_progress(running), b"1")  # a worker has taken it

    assert (await admin.post(f"/events/{waiting}/replay", headers=AUTH)).status == 202
    queued = {m.decode() for m in await redis.zrange(KEYS.queue, 0, -1)}
    assert queued == {f"{waiting}:replay:1", running}
    assert await redis.exists(KEYS.job(waiting)) == 0
    assert (await admin.post(f"/events/{waiting}/replay", headers=AUTH)).status == 202
    queued = {m.decode() for m in await redis.zrange(KEYS.queue, 0, -1)}
    assert queued == {f"{waiting}:replay:2", running}
    assert await redis.exists(KEYS.job(f"{waiting}:replay:1")) == 0

    assert (await admin.post(f"/events/{running}/replay", headers=AUTH)).status == 202
    queued = {m.decode() for m in await redis.zrange(KEYS.queue, 0, -1)}
    assert queued == {f"{waiting}:replay:2", running, f"{running}:replay:1"}
    assert await redis.exists(KEYS.job(running)) == 1


async def test_a_retry_is_of_the_events_current_generation(
    admin: Client, redis: aioredis.Redis
) -> None:
    event_id = await deliver(admin, "vps.created", id="vps_1")
    await finish(redis, event_id, notify="failed")
    assert (await admin.post(f"/events/{event_id}/replay", headers=AUTH)).status == 202
    store = DeadLetters(redis, KEYS)
    raw = json.loads(make_body("vps.created", id="vps_1"))
    # The replay's run failed: its dead letter is of replay 1.
    dl_id = await store.add(
        {"event_id": event_id, "event": raw, "rule": "notify", "error": "e", "replay": 1}
    )
    resp = await admin.post(f"/deadletters/{dl_id}/retry", headers=AUTH)
    job_id = (await resp.json())["job_id"]
    [payload, rule, _] = json.loads(await redis.get(KEYS.job(job_id)))["a"]
    assert rule == "notify" and payload["replay"] == 1 and payload["retry"] == 1


async def test_a_dead_letter_of_a_superseded_run_is_removed_not_retried(
    admin: Client, redis: aioredis.Redis
) -> None:
    """A run that failed after a replay of its event was queued (the replay runs the rule
    again): retrying its dead letter would run the rule a third time."""
    event_id = await deliver(admin, "vps.created", id="vps_1")
    assert (await admin.post(f"/events/{event_id}/replay", headers=AUTH)).status == 202
    store = DeadLetters(redis, KEYS)
    raw = json.loads(make_body("vps.created", id="vps_1"))
    dl_id = await store.add({"event_id": event_id, "event": raw, "rule": "notify", "error": "e"})
    queued = await redis.zcard(KEYS.queue)
    resp = await admin.post(f"/deadletters/{dl_id}/retry", headers=AUTH)
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error["code"] == "not_found"
    assert f"replay 1 of event {event_id} superseded" in error["message"]
    assert await store.get(dl_id) is None and await redis.zcard(KEYS.queue) == queued


async def test_the_list_and_the_detail_give_the_same_received_at(
    admin: Client, redis: aioredis.Redis
) -> None:
    ids = [await deliver(admin, "vps.created", id=f"vps_{n}") for n in range(20)]
    listed = {e["id"]: e["received_at"] for e in (await get(admin, "/events"))["data"]}
    for event_id in ids:
        assert (await get(admin, f"/events/{event_id}"))["received_at"] == listed[event_id]
