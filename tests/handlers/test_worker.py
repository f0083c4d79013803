"""Events through the real receiver, Redis queue and worker to the simulator and Slack."""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
import time

from tests.handlers.conftest import API_KEY, SECRET, SLACK_PATH, StackFactory

FAST_RETRY = "retry: {attempts: 3, backoff: exponential, initial: 10ms, max: 50ms}"

KUBECONFIG_RULES = """
version: 1
defaults:
  timeout: 5s
targets:
  ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
rules:
  - name: save-kubeconfig
    on: kubernetes.ready
    steps:
      - id: kubeconfig
        api: {method: GET, path: "/kubernetes/{{ event.data.id }}/kubeconfig"}
      - id: saved
        file:
          path: "kubeconfigs/{{ event.data.id }}.yaml"
          content: "{{ steps.kubeconfig.body }}"
          mode: "0600"
      - slack: {target: ops, text: "Cluster {{ event.data.name }} saved to {{ steps.saved.path }}"}
"""


async def test_cluster_ready_saves_kubeconfig_and_tells_slack(make_stack: StackFactory) -> None:
    stack = await make_stack(KUBECONFIG_RULES)
    stack.sim.state.add_webhook(stack.url, events=["kubernetes.ready"], secret=SECRET)
    cluster = await stack.create_cluster("prod")
    messages = await stack.slack.wait_for_messages(1, max_wait=10)
    path = stack.settings.data_dir / "kubeconfigs" / f"{cluster['id']}.yaml"
    assert messages[-1].text == f"Cluster prod saved to {path}"
    assert messages[-1].path == SLACK_PATH
    text = path.read_text()
    assert cluster["id"] in text and "prod" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [delivery] = [r for r in await stack.audit() if r["kind"] == "delivery"]
    [run] = await stack.wait_runs(delivery["id"])
    assert run["status"] == "ok" and run["rule"] == "save-kubeconfig"


async def test_missing_cluster_is_dead_lettered(make_stack: StackFactory) -> None:
    stack = await make_stack(KUBECONFIG_RULES)
    event_id = await stack.send("kubernetes.ready", id="k8s_missing", name="prod")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    [dead] = await stack.deadletters()
    assert "404 not_found" in dead["error"] and dead["step"] == 0


async def test_path_values_are_one_segment(make_stack: StackFactory) -> None:
    stack = await make_stack(KUBECONFIG_RULES)
    event_id = await stack.send("kubernetes.ready", id="../../webhooks", name="x")
    await stack.wait_runs(event_id)
    # The simulator routed it as the kubeconfig of a cluster named "../../webhooks".
    assert stack.sim.state.calls("GET", "/v1/kubernetes/{id}/kubeconfig") == 1
    assert len(stack.sim.state.requests) == 1
    [dead] = await stack.deadletters()
    assert "Cluster ../../webhooks not found" in dead["error"]


async def test_failing_step_lands_in_dead_letters_after_its_retries(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(f"""
        version: 1
        defaults:
          {FAST_RETRY}
        targets:
          ops: {{type: slack, url: "${{SLACK_URL}}", allow_private: true}}
        rules:
          - name: notify
            on: vps.status_changed
            steps:
              - slack:
                  target: ops
                  text: "{{{{ event.data.name }}}} is {{{{ event.data.status }}}}"
    """)
    stack.slack.fail(SLACK_PATH, status=500, count=None)
    event_id = await stack.send("vps.status_changed", id="vps_1", name="web-1", status="stopped")
    runs = await stack.wait_runs(event_id)
    assert runs[0]["status"] == "failed"
    [dead] = await stack.deadletters()
    assert dead["event_id"] == event_id and dead["rule"] == "notify"
    assert dead["attempts"] == 3 and "500" in dead["error"]
    assert dead["event"]["data"]["name"] == "web-1"
    assert len(stack.slack.requests) == 3
    assert runs[0]["deadletter"] == dead["id"]


async def test_slack_permanent_error_is_not_retried(make_stack: StackFactory) -> None:
    stack = await make_stack(f"""
        version: 1
        defaults:
          {FAST_RETRY}
        targets:
          ops: {{type: slack, url: "${{SLACK_URL}}", allow_private: true}}
        rules:
          - name: notify
            on: "vps.*"
            steps:
              - slack: {{target: ops, text: "hello"}}
    """)
    stack.slack.fail(SLACK_PATH, "channel_is_archived", count=None)
    event_id = await stack.send("vps.created", id="vps_1")
    await stack.wait_runs(event_id)
    [dead] = await stack.deadletters()
    assert dead["attempts"] == 1 and "channel_is_archived" in dead["error"]
    assert len(stack.slack.requests) == 1


OFF_RULES = """
version: 1
rules:
  - name: off-switch
    on: [off, no]
    when:
      data.mode: off
      data.ok: yes
    steps:
      - log: {message: "{{ event.event }} {{ event.data.mode }}"}
      - file: {path: "switch/{{ event.event }}.txt", content: "{{ event.data.mode }}"}
"""


async def test_on_key_and_off_no_values_are_strings(make_stack: StackFactory) -> None:
    stack = await make_stack(OFF_RULES)
    matching = await stack.send("off", mode="off", ok="yes")
    assert (await stack.wait_runs(matching))[0]["status"] == "ok"
    assert (stack.settings.data_dir / "switch" / "off.txt").read_text() == "off"
    other = await stack.send("no", mode="on", ok="yes")
    assert (await stack.wait_runs(other))[0]["status"] == "no_match"
    assert not (stack.settings.data_dir / "switch" / "no.txt").exists()


API_RULES = f"""
version: 1
defaults:
  timeout: 5s
  {FAST_RETRY}
rules:
  - name: lookup
    on: vps.created
    steps:
      - api: {{method: GET, path: "/vps"}}
  - name: attach
    on: network.wanted
    steps:
      - api:
          method: POST
          path: "/networks"
          json: {{name: "{{{{ event.data.name }}}}", cidr: "10.0.0.0/24"}}
"""


async def test_get_retried_on_5xx_and_reset(make_stack: StackFactory) -> None:
    stack = await make_stack(API_RULES)
    state = stack.sim.state
    state.add_fault("/v1/vps", method="GET", status=503, count=1)
    state.add_fault("/v1/vps", method="GET", reset=True, count=1)
    event_id = await stack.send("vps.created", id="vps_1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "ok"
    assert len([r for r in state.requests if r.method == "GET"]) == 3


async def test_post_retried_only_with_its_idempotency_key(make_stack: StackFactory) -> None:
    stack = await make_stack(API_RULES)
    state = stack.sim.state
    # The platform acts, then the answer is lost (connection reset): the retry must not
    # create a second network.
    state.add_fault("/v1/networks", method="POST", reset=True, after=True, count=1)
    state.add_fault("/v1/networks", method="POST", status=500, count=1)
    event_id = await stack.send("network.wanted", name="n1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "ok"
    posts = [r for r in state.requests if r.method == "POST"]
    assert len(posts) == 3
    keys = {r.headers.get("Idempotency-Key") for r in posts}
    assert keys == {f"{event_id}:attach:0"}
    assert [n.name for n in state.networks.values()] == ["n1"]


async def test_post_exhausting_retries_is_dead_lettered(make_stack: StackFactory) -> None:
    stack = await make_stack(API_RULES)
    stack.sim.state.add_fault("/v1/networks", method="POST", status=500, count=None)
    event_id = await stack.send("network.wanted", name="n1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    [dead] = await stack.deadletters()
    assert dead["attempts"] == 3 and "500" in dead["error"]


async def test_429_waits_for_retry_after(make_stack: StackFactory) -> None:
    stack = await make_stack(API_RULES)
    stack.sim.state.add_fault(
        "/v1/vps", method="GET", status=429, count=1, headers={"Retry-After": "1"}
    )
    started = time.monotonic()
    event_id = await stack.send("vps.created", id="vps_1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "ok"
    assert time.monotonic() - started >= 1.0
    gets = [r for r in stack.sim.state.requests if r.method == "GET"]
    assert len(gets) == 2


async def test_long_rate_limit_defers_the_rule_instead_of_sleeping(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(API_RULES)
    reset = int(time.time()) + 3600
    stack.sim.state.add_fault(
        "/v1/vps", method="GET", status=429, count=1, headers={"X-RateLimit-Reset": str(reset)}
    )
    event_id = await stack.send("vps.created", id="vps_1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "deferred"
    steps = [r for r in await stack.audit(event_id) if r["kind"] == "step"]
    assert [s["status"] for s in steps] == ["deferred"]
    for _ in range(200):  # the first job ends and leaves the deferred one queued
        queued = await stack.redis.zrange(stack.keys.queue, 0, -1, withscores=True)
        if len(queued) == 1 and queued[0][0] != event_id.encode():
            break
        await asyncio.sleep(0.02)
    [(job_id, score)] = queued
    assert job_id.decode().startswith(f"{event_id}:lookup:deferred")
    assert score / 1000 > time.time() + 3000  # runs again after the reset, not now
    job = json.loads(await stack.redis.get(stack.keys.job(job_id.decode())))
    assert job["f"] == "run_rule" and job["a"][1] == "lookup"


async def test_file_paths_stay_inside_data_dir(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        rules:
          - name: write
            on: x.y
            steps:
              - file: {path: "out/{{ event.data.name }}.txt", content: "{{ event.data.name }}"}
          - name: escape
            on: x.escape
            steps:
              - file: {path: "link/escape.txt", content: "pwned"}
    """)
    data = stack.settings.data_dir
    outside = data.parent / "outside"
    outside.mkdir()
    (data / "link").symlink_to(outside)  # a symlink out of DATA_DIR is refused when it runs
    for name in ("../escape", "/etc/passwd", "a/../../escape", ".."):
        event_id = await stack.send("x.y", name=name)
        assert (await stack.wait_runs(event_id))[0]["status"] == "ok"
    # Event values are one file name each, percent-encoded: no directories, no walking up.
    written = sorted(p.name for p in (data / "out").iterdir())
    assert written == [
        "%2E%2E.txt",
        "%2Fetc%2Fpasswd.txt",
        "..%2Fescape.txt",
        "a%2F..%2F..%2Fescape.txt",
    ]
    assert sorted(p.name for p in data.iterdir()) == ["link", "out"]
    event_id = await stack.send("x.escape", n="1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "failed"
    [dead] = await stack.deadletters()
    assert "outside DATA_DIR" in dead["error"]
    assert list(outside.iterdir()) == []


async def test_template_errors_in_if_and_throttle_are_dead_lettered(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack("""
        version: 1
        rules:
          - name: guarded
            on: x.y
            steps:
              - if: "event.data.flag == 'yes'"
                log: {message: "flagged"}
          - name: throttled
            on: x.y
            throttle: {key: "{{ event.data.id }}", limit: 1, per: 1m}
            steps:
              - log: {message: "hi"}
    """)
    event_id = await stack.send("x.y", other="1")  # neither flag nor id
    runs = {r["rule"]: r for r in await stack.wait_runs(event_id, n=2)}
    assert runs["guarded"]["status"] == "failed"
    assert runs["throttled"]["status"] == "failed"
    errors = {d["rule"]: d["error"] for d in await stack.deadletters()}
    assert "flag" in errors["guarded"] and "throttle key" in errors["throttled"]


async def test_http_target_gets_the_event_and_throttle_drops_repeats(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack("""
        version: 1
        targets:
          sink: {type: http, url: "${SINK_URL}", allow_private: true}
        rules:
          - name: forward
            on: "vps.*"
            throttle: {key: "{{ event.data.id }}", limit: 1, per: 10m}
            steps:
              - http: {target: sink}
    """)
    first = await stack.send("vps.created", id="vps_1", n="1")
    second = await stack.send("vps.deleted", id="vps_1", n="2")
    other = await stack.send("vps.deleted", id="vps_2", n="3")
    statuses = [(await stack.wait_runs(e))[0]["status"] for e in (first, second, other)]
    assert statuses == ["ok", "throttled", "ok"]
    received = stack.slack.state.sink_requests("audit")
    assert sorted(r.json["data"]["n"] for r in received) == ["1", "3"]
    assert {r.headers.get("X-Tashooks-Event") for r in received} == {first, other}


async def test_backoff_is_capped_and_jittered_never_a_tight_loop(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack("""
        version: 1
        defaults:
          retry: {attempts: 5, backoff: exponential, initial: 200ms, max: 400ms}
        rules:
          - name: lookup
            on: vps.created
            steps:
              - api: {method: GET, path: "/vps"}
    """)
    state = stack.sim.state
    state.add_fault("/v1/vps", method="GET", status=500, count=1)
    state.add_fault("/v1/vps", method="GET", status=503, count=1)
    state.add_fault("/v1/vps", method="GET", reset=True, count=1)
    state.add_fault(
        "/v1/vps",
        method="GET",
        status=429,
        count=1,
        headers={"X-RateLimit-Reset": str(int(time.time()) - 60)},
    )  # past: now
    event_id = await stack.send("vps.created", id="vps_1")
    assert (await stack.wait_runs(event_id, max_wait=20))[0]["status"] == "ok"
    times = [r.time for r in state.requests]
    assert len(times) == 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Equal jitter: at least half of min(initial * 2**n, max), at most the cap (plus slack).
    for gap, base in zip(gaps, [0.2, 0.4, 0.4, 0.4], strict=True):
        assert base / 2 - 0.02 <= gap <= base + 0.25, gaps


async def test_throttle_delay_runs_later_instead_of_dropping(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        targets:
          sink: {type: http, url: "${SINK_URL}", allow_private: true}
        rules:
          - name: forward
            on: "vps.*"
            throttle: {key: "{{ event.data.id }}", limit: 1, per: 1s, mode: delay}
            steps:
              - http: {target: sink}
    """)
    first = await stack.send("vps.created", id="vps_1", n="1")
    second = await stack.send("vps.deleted", id="vps_1", n="2")
    assert (await stack.wait_runs(first))[0]["status"] == "ok"
    runs = await stack.wait_runs(second, n=2, max_wait=10)
    assert [r["status"] for r in runs] == ["deferred", "ok"]
    received = stack.slack.state.sink_requests("audit")
    assert [r.json["data"]["n"] for r in received] == ["1", "2"]
    assert received[1].time - received[0].time >= 0.3  # waited for the next window


async def test_concurrency_limit(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        rules:
          - name: one-at-a-time
            on: job.start
            ordered: false
            concurrency: 2
            steps:
              - api: {method: GET, path: "/vps"}
    """)
    stack.sim.state.add_fault("/v1/vps", method="GET", delay=0.3, count=None)
    ids = [await stack.send("job.start", n=str(n)) for n in range(6)]
    for event_id in ids:
        assert (await stack.wait_runs(event_id, max_wait=20))[0]["status"] == "ok"
    times = sorted(r.time for r in stack.sim.state.requests)
    # Six 0.3 s calls, two at a time: three waves.
    assert times[-1] - times[0] >= 0.55
    in_flight = max(sum(1 for t in times if start <= t < start + 0.25) for start in times)
    assert in_flight <= 2


async def test_new_work_wakes_the_worker_without_waiting_for_a_poll(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(
        """
        version: 1
        rules:
          - name: note
            on: x.y
            steps:
              - log: {message: "hi"}
        """,
        poll_delay=30.0,
    )
    await asyncio.sleep(0.3)  # the worker has looked once and now sleeps for 30 s
    started = time.monotonic()
    event_id = await stack.send("x.y", n="1")
    assert (await stack.wait_runs(event_id, max_wait=10))[0]["status"] == "ok"
    assert time.monotonic() - started < 5  # woken by the receiver, not by the 30 s poll


async def test_configured_secrets_never_reach_the_audit_or_dead_letters(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack("""
        version: 1
        rules:
          - name: echo
            on: x.y
            steps:
              - log: {message: "k={{ event.data.k }}"}
              - file: {path: "{{ event.data.k }}", content: "x", mode: "0600"}
    """)
    event_id = await stack.send("x.y", k=f"{API_KEY}/../../x")
    assert (await stack.wait_runs(event_id))[0]["status"] in ("ok", "failed")
    recorded = [r for r in await stack.audit(event_id) if r["kind"] != "delivery"]
    dead = [{k: v for k, v in d.items() if k != "event"} for d in await stack.deadletters()]
    assert recorded and API_KEY not in json.dumps(recorded) + json.dumps(dead)
    steps = [r for r in await stack.audit(event_id) if r["kind"] == "step"]
    assert json.loads(steps[0]["params"]) == {"message": "k=***/../../x", "level": "info"}


async def test_heartbeat_republishes_the_rules_version(make_stack: StackFactory) -> None:
    stack = await make_stack("version: 1\nrules: []\n")
    for _ in range(50):  # published when the worker has started
        if version := await stack.redis.get(stack.keys.rules_version):
            break
        await asyncio.sleep(0.1)
    assert version
    await stack.redis.delete(stack.keys.rules_version)  # as if Redis lost its data
    for _ in range(80):
        if await stack.redis.get(stack.keys.rules_version) == version:
            break
        await asyncio.sleep(0.1)
    assert await stack.redis.get(stack.keys.rules_version) == version


async def test_a_finished_job_leaves_nothing_queued(make_stack: StackFactory) -> None:
    stack = await make_stack(
        """
        version: 1
        rules:
          - name: note
            on: vps.created
            steps:
              - log: {message: "{{ event.data.id }}"}
        """
    )
    # One rule (the job is removed by the run's own last write), a resource without a
    # rule (by the no_match record's), an event without a resource.
    ids = [
        await stack.send("vps.created", id="vps_1"),
        await stack.send("vps.deleted", id="vps_2"),
        await stack.send("vps.created", name="no-id"),
    ]
    for event_id in ids:
        await stack.wait_runs(event_id)
    await asyncio.sleep(0.2)
    assert await stack.redis.zcard(stack.keys.queue) == 0
    for event_id in ids:
        assert not await stack.redis.exists(
            stack.keys.job(event_id), f"arq:in-progress:{event_id}", f"arq:retry:{event_id}"
        )
    assert not await stack.redis.exists(stack.keys.resource_lock("vps_1"))
    assert not await stack.redis.exists(stack.keys.resource_lock("vps_2"))


async def test_values_from_the_environment_are_masked_in_audit_records(
    make_stack: StackFactory,
) -> None:
    """A ``${NAME}`` value (a token, a webhook URL) is kept out of the audit stream like
    the configured secrets: the step's recorded params show it masked."""
    stack = await make_stack("""
        version: 1
        targets:
          sink: {type: http, url: "${SINK_URL}", allow_private: true}
        rules:
          - name: forward
            on: vps.created
            steps:
              - http: {target: sink, headers: {X-Custom: "v-${SLACK_URL}"}, json: {a: 1}}
    """)
    event_id = await stack.send("vps.created", id="vps_1")
    assert (await stack.wait_runs(event_id))[0]["status"] == "ok"
    [request] = [r for r in stack.slack.state.requests if r.path == "/sink/audit"]
    secret = stack.slack.url_for(SLACK_PATH)
    assert request.headers["X-Custom"] == f"v-{secret}"  # sent as written
    [step] = [r for r in await stack.audit(event_id) if r["kind"] == "step"]
    assert secret not in json.dumps(step)
    assert "v-***" in step["params"]
