"""The admin API against a whole tashooks: runs recorded by the real worker, replays and
dead-letter retries run by it, audit records streamed live."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.handlers.conftest import API_KEY, SLACK_PATH, Stack, StackFactory

TOKEN = "stack-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST_RETRY = "retry: {attempts: 2, backoff: exponential, initial: 10ms, max: 20ms}"

RULES = f"""
version: 1
defaults:
  {FAST_RETRY}
targets:
  ops: {{type: slack, url: "${{SLACK_URL}}", allow_private: true}}
rules:
  - name: notify
    on: "vps.*"
    steps:
      - id: said
        slack: {{target: ops, text: "{{{{ event.data.id }}}} {{{{ event.event }}}}"}}
      - log: {{message: "told slack about {{{{ event.data.id }}}}"}}
  - name: note
    on: vps.created
    steps:
      - log: {{message: "created {{{{ event.data.id }}}}"}}
"""


async def api(stack: Stack, method: str, path: str, expect: int = 200, **params: Any) -> Any:
    resp = await stack.http.request(method, stack.base + path, headers=AUTH, params=params)
    assert resp.status_code == expect, resp.text
    return resp.json() if resp.content else None


async def settled(stack: Stack, event_id: str, max_wait: float = 15.0) -> dict[str, Any]:
    """The event once nothing is queued or running for it any more."""
    deadline = time.monotonic() + max_wait
    while True:
        event: dict[str, Any] = await api(stack, "GET", f"/events/{event_id}")
        if event["status"] != "pending":
            return event
        assert time.monotonic() < deadline, event
        await asyncio.sleep(0.05)


async def test_event_detail_shows_the_runs_of_the_real_worker(make_stack: StackFactory) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    event_id = await stack.send("vps.created", id="vps_1")
    nothing = await stack.send("template.deployed", id="tpl_1")
    event = await settled(stack, event_id)
    assert event["status"] == "ok" and event["type"] == "vps.created"
    assert event["event"]["data"] == {"id": "vps_1"}
    runs = {run["rule"]: run for run in event["runs"]}
    assert set(runs) == {"notify", "note"}
    assert runs["notify"]["status"] == "ok"
    assert [s["status"] for s in runs["notify"]["steps"]] == ["ok", "ok"]
    assert runs["notify"]["steps"][0]["step_id"] == "said"
    assert (await settled(stack, nothing))["status"] == "no_match"

    page = await api(stack, "GET", "/events", type="vps.*")
    [item] = page["data"]
    assert item["id"] == event_id and item["rules"] == {"notify": "ok", "note": "ok"}
    assert [i["id"] for i in (await api(stack, "GET", "/events", status="no_match"))["data"]] == [
        nothing
    ]
    assert (await stack.http.get(stack.base + "/events")).status_code == 401


async def test_replay_runs_the_rules_again(make_stack: StackFactory) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    event_id = await stack.send("vps.status_changed", id="vps_1", status="stopped")
    await stack.wait_runs(event_id)
    # A newer event about the same resource: replaying the older one is not "stale".
    await stack.wait_runs(await stack.send("vps.status_changed", id="vps_1", status="running"))
    queued = await api(stack, "POST", f"/events/{event_id}/replay", 202)
    assert queued == {"status": "queued", "job_id": f"{event_id}:replay:1", "event_id": event_id}
    runs = await stack.wait_runs(event_id, 2)
    assert [r["status"] for r in runs] == ["ok", "ok"]
    event = await settled(stack, event_id)
    assert event["status"] == "ok" and event["replays"] == 1
    texts = [m.text for m in await stack.slack.wait_for_messages(3)]
    assert texts.count("vps_1 vps.status_changed") == 3
    await api(stack, "POST", "/events/evt_01UNKNOWN/replay", 404)


async def test_deadletter_retry_completes_the_run_after_the_cause_is_fixed(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    stack.slack.fail(SLACK_PATH, status=500, count=None)
    event_id = await stack.send("vps.deleted", id="vps_7")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    assert (await settled(stack, event_id))["status"] == "failed"
    [dead] = (await api(stack, "GET", "/deadletters"))["data"]
    assert dead["event_id"] == event_id and dead["rule"] == "notify" and dead["step"] == 0

    stack.slack.state.clear_failures()
    queued = await api(stack, "POST", f"/deadletters/{dead['id']}/retry", 202)
    assert queued["job_id"] == f"{event_id}:notify:retry:1"
    runs = await stack.wait_runs(event_id, 2)
    assert runs[-1]["status"] == "ok"
    assert (await settled(stack, event_id))["status"] == "ok"
    assert (await api(stack, "GET", "/deadletters"))["data"] == []
    assert [m.text for m in await stack.slack.wait_for_messages(1)] == ["vps_7 vps.deleted"]
    await api(stack, "POST", f"/deadletters/{dead['id']}/retry", 404)


async def test_a_replay_supersedes_the_events_dead_letters(make_stack: StackFactory) -> None:
    """One dead letter per run: a replay that fails again replaces it, one that succeeds
    removes it, so retrying every dead letter never runs a rule twice for one event."""
    stack = await make_stack(RULES, admin_token=TOKEN)
    stack.slack.fail(SLACK_PATH, status=404, count=None)
    event_id = await stack.send("vps.deleted", id="vps_9")
    await stack.wait_runs(event_id)
    [first] = (await api(stack, "GET", "/deadletters"))["data"]

    await api(stack, "POST", f"/events/{event_id}/replay", 202)
    assert [r["status"] for r in await stack.wait_runs(event_id, 2)] == ["failed", "failed"]
    [second] = (await api(stack, "GET", "/deadletters"))["data"]  # still one, the newer
    assert second["id"] != first["id"] and second["event_id"] == event_id
    await api(stack, "POST", f"/deadletters/{first['id']}/retry", 404)

    stack.slack.state.clear_failures()
    await api(stack, "POST", f"/events/{event_id}/replay", 202)
    assert (await stack.wait_runs(event_id, 3))[-1]["status"] == "ok"
    assert (await api(stack, "GET", "/deadletters"))["data"] == []
    assert [m.text for m in await stack.slack.wait_for_messages(1)] == ["vps_9 vps.deleted"]


async def test_deadletter_delete(make_stack: StackFactory) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    stack.slack.fail(SLACK_PATH, "channel_is_archived", count=None)
    event_id = await stack.send("vps.deleted", id="vps_8")
    await stack.wait_runs(event_id)
    [dead] = (await api(stack, "GET", "/deadletters"))["data"]
    await api(stack, "DELETE", f"/deadletters/{dead['id']}", 204)
    assert (await api(stack, "GET", "/deadletters"))["data"] == []
    await api(stack, "DELETE", f"/deadletters/{dead['id']}", 404)


async def test_stream_shows_deliveries_steps_and_runs_live(make_stack: StackFactory) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    kinds: list[tuple[str, dict[str, Any]]] = []
    async with stack.http.stream(
        "GET", stack.base + "/events/stream", headers=AUTH, params={"type": "vps.*"}
    ) as resp:
        assert resp.status_code == 200
        lines = resp.aiter_lines()
        await stack.send("kubernetes.ready", id="k8s_1")  # filtered out
        event_id = await stack.send("vps.created", id="vps_1")
        kind = ""
        while sum(k == "run" for k, _ in kinds) < 2:
            line = await asyncio.wait_for(anext(lines), 10)
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                kinds.append((kind, json.loads(line[6:])))
    assert kinds[0][0] == "delivery" and kinds[0][1]["id"] == event_id
    assert {k for k, _ in kinds} == {"delivery", "step", "run"}
    assert all(record["id"] == event_id for _, record in kinds)


API_RULES = """
version: 1
defaults:
  retry: {attempts: 2, backoff: exponential, initial: 10ms, max: 20ms}
rules:
  - name: lookup
    on: vps.created
    steps:
      - api: {method: GET, path: "/vps"}
  - name: bucket
    on: bucket.wanted
    steps:
      - api: {call: storage.create_bucket, json: {name: "{{ event.data.name }}"}}
"""


async def create_bucket(stack: Stack, name: str) -> None:
    """Create a bucket on the simulated platform (so creating it again is refused)."""
    created = await stack.http.post(
        f"{stack.sim.url}/storage/buckets",
        json={"name": name},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert created.status_code == 201


async def test_a_replay_supersedes_a_deferred_run(make_stack: StackFactory) -> None:
    """A run deferred by a long rate limit does not run again after a replay ran the
    event's rules afresh (it would repeat them)."""
    stack = await make_stack(API_RULES, admin_token=TOKEN)
    reset = int(time.time()) + 3600
    stack.sim.state.add_fault(
        "/v1/vps", method="GET", status=429, count=1, headers={"X-RateLimit-Reset": str(reset)}
    )
    event_id = await stack.send("vps.created", id="vps_1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "deferred"
    await api(stack, "POST", f"/events/{event_id}/replay", 202)
    assert (await stack.wait_runs(event_id, 2))[-1]["status"] == "ok"
    assert stack.sim.state.calls("GET", "/v1/vps") == 2  # the 429, then the replay's

    # The hour passes: the deferred run comes due.
    [deferred] = [
        m for m in await stack.redis.zrange(stack.keys.queue, 0, -1) if b":deferred:" in m
    ]
    await stack.redis.zadd(stack.keys.queue, {deferred: int(time.time() * 1000)})
    for _ in range(500):
        if not await stack.redis.exists(stack.keys.job(deferred.decode())):
            break
        await asyncio.sleep(0.02)
    assert not await stack.redis.exists(stack.keys.job(deferred.decode()))
    assert await stack.redis.zcard(stack.keys.queue) == 0
    assert stack.sim.state.calls("GET", "/v1/vps") == 2
    assert [r["status"] for r in await stack.runs(event_id)] == ["deferred", "ok"]


async def test_a_retry_after_the_cause_is_fixed_is_a_new_request(
    make_stack: StackFactory,
) -> None:
    """A step refused for good (422: the bucket exists) is retried with a new
    Idempotency-Key once the cause is gone: the platform acts instead of answering the
    retry with its earlier refusal. A replay is a new request too."""
    stack = await make_stack(API_RULES, admin_token=TOKEN)
    await create_bucket(stack, "bkt-idem")
    event_id = await stack.send("bucket.wanted", name="bkt-idem")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    [dead] = (await api(stack, "GET", "/deadletters"))["data"]
    assert "already exists" in dead["error"]

    del stack.sim.state.buckets["bkt-idem"]  # the cause, fixed
    await api(stack, "POST", f"/deadletters/{dead['id']}/retry", 202)
    assert (await stack.wait_runs(event_id, 2))[-1]["status"] == "ok"
    assert "bkt-idem" in stack.sim.state.buckets

    del stack.sim.state.buckets["bkt-idem"]
    await api(stack, "POST", f"/events/{event_id}/replay", 202)
    assert (await stack.wait_runs(event_id, 3))[-1]["status"] == "ok"
    assert "bkt-idem" in stack.sim.state.buckets
    keys = [
        r.headers.get("idempotency-key") or r.headers.get("Idempotency-Key")
        for r in stack.sim.state.requests
        if r.method == "POST"
    ]
    assert keys[1:] == [
        f"{event_id}:bucket:0",
        f"{event_id}:bucket:0:retry1",
        f"{event_id}:bucket:0:replay1",
    ]


ORDERED_RULES = """
version: 1
defaults:
  retry: {attempts: 2, backoff: exponential, initial: 10ms, max: 20ms}
targets:
  ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
rules:
  - name: say
    on: vps.status_changed
    steps:
      - slack: {target: ops, text: "{{ event.data.id }} {{ event.data.status }}"}
"""


async def _bring_forward(stack: Stack, marker: bytes) -> bytes:
    """Make the queued job whose id holds ``marker`` due now (as if its wait had passed)."""
    for _ in range(250):
        found = [m for m in await stack.redis.zrange(stack.keys.queue, 0, -1) if marker in m]
        if found:
            await stack.redis.zadd(stack.keys.queue, {found[0]: int(time.time() * 1000)})
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no queued job with {marker!r}")


async def test_a_deferred_run_overtaken_by_a_newer_event_is_stale(
    make_stack: StackFactory,
) -> None:
    """Order per resource holds across a deferral: the older event's run, deferred by a
    long rate limit, does not have the last word once a newer event was handled."""
    stack = await make_stack(ORDERED_RULES, admin_token=TOKEN)
    stack.slack.fail(SLACK_PATH, "rate_limited", retry_after=120, count=1)
    older = await stack.send("vps.status_changed", id="vps_1", status="stopped")
    assert (await stack.wait_runs(older))[0]["status"] == "deferred"
    newer = await stack.send("vps.status_changed", id="vps_1", status="running")
    assert (await stack.wait_runs(newer))[0]["status"] == "ok"

    job = await _bring_forward(stack, b":deferred:")
    runs = await stack.wait_runs(older, 2)
    assert runs[-1]["status"] == "stale"
    for _ in range(250):
        if not await stack.redis.exists(stack.keys.job(job.decode())):
            break
        await asyncio.sleep(0.02)
    assert [m.text for m in stack.slack.state.messages] == ["vps_1 running"]


async def test_a_run_failing_after_a_replay_was_queued_leaves_no_dead_letter(
    make_stack: StackFactory,
) -> None:
    """The replay runs the rule again; a dead letter of the superseded run would let a
    retry run it a third time. Its failure is still on record."""
    stack = await make_stack(API_RULES, admin_token=TOKEN)
    stack.sim.state.add_fault("/v1/vps", method="GET", status=404, delay=1.0, count=1)
    event_id = await stack.send("vps.created", id="vps_1")
    await asyncio.sleep(0.3)  # the run waits for the slow 404
    await api(stack, "POST", f"/events/{event_id}/replay", 202)
    runs = await stack.wait_runs(event_id, 2)
    assert sorted(r["status"] for r in runs) == ["failed", "ok"]
    [failed] = [r for r in runs if r["status"] == "failed"]
    assert "no dead letter: replay 1 of the event runs it again" in failed["error"]
    assert (await api(stack, "GET", "/deadletters"))["data"] == []
    assert stack.sim.state.calls("GET", "/v1/vps") == 2


EDITABLE = """
version: 1
defaults:
  retry: {{attempts: 2, backoff: exponential, initial: 10ms, max: 20ms}}
rules:
  - name: build
    on: build.wanted
    steps:{inserted}
      - api: {{method: GET, path: "/vps"}}
      - api: {{call: storage.create_bucket, json: {{name: "{{{{ event.data.name }}}}"}}}}
"""


async def test_a_retry_after_the_rule_was_edited_skips_only_what_ran_as_it_is_now(
    make_stack: StackFactory,
) -> None:
    """Finished steps are recorded by what they are, not where they stand: after a step is
    inserted before them, a retry runs the new step and the failed one, and does not
    repeat the one that had finished."""
    stack = await make_stack(EDITABLE.format(inserted=""), watch_rules=True, admin_token=TOKEN)
    await create_bucket(stack, "bkt-edit")
    event_id = await stack.send("build.wanted", name="bkt-edit")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    [dead] = (await api(stack, "GET", "/deadletters"))["data"]

    version = await stack.redis.get(stack.keys.rules_version)
    inserted = '\n      - api: {method: GET, path: "/storage/buckets"}'
    stack.settings.rules.write_text(EDITABLE.format(inserted=inserted))
    for _ in range(300):  # the worker notices the change within a second or two
        if await stack.redis.get(stack.keys.rules_version) != version:
            break
        await asyncio.sleep(0.02)
    assert await stack.redis.get(stack.keys.rules_version) != version

    del stack.sim.state.buckets["bkt-edit"]  # the cause, fixed
    await api(stack, "POST", f"/deadletters/{dead['id']}/retry", 202)
    assert (await stack.wait_runs(event_id, 2))[-1]["status"] == "ok"
    assert "bkt-edit" in stack.sim.state.buckets
    assert stack.sim.state.calls("GET", "/v1/vps") == 1  # not repeated
    assert stack.sim.state.calls("GET", "/v1/storage/buckets") == 1  # the new step ran
    # The event view shows the whole run, the step done by the first attempt included.
    [run] = (await settled(stack, event_id))["runs"]
    assert [(s["step"], s["status"]) for s in run["steps"]] == [(0, "ok"), (1, "done"), (2, "ok")]
    assert run["steps"][1]["earlier"] is True
