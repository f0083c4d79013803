"""(a) kill -9 of a worker in the middle of a step: another worker finishes the run."""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable

import httpx

from tests.faults.conftest import Env, event_body, wait_until

RULES = """
version: 1
defaults: {timeout: 120s}
rules:
  - name: provision
    on: job.start
    ordered: false
    steps:
      - api:
          method: POST
          path: "/networks"
          json: {name: "{{ event.data.name }}", cidr: "10.0.0.0/24"}
      - api: {method: GET, path: "/networks"}
      - file: {path: "done-{{ event.data.name }}.txt", content: "ok"}
"""


async def test_kill_9_worker_mid_step(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(RULES)
    sim = env.sim.state
    sim.add_fault("/v1/networks", method="GET", delay=120, count=1)  # step 2 hangs
    await env.start_receiver()
    first = env.spawn("worker")
    async with httpx.AsyncClient() as client:
        resp = await env.post(client, event_body("job.start", name="n1"))
        assert resp.status_code == 202
        event_id = resp.json()["id"]

    async def slow_call_started() -> bool:
        return any(r.method == "GET" and r.path == "/v1/networks" for r in sim.requests)

    await wait_until(slow_call_started, 20, "the worker to reach the slow step")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    env.spawn("worker")
    done = env.tmp / "data" / "done-n1.txt"

    async def finished() -> bool:
        return done.exists()

    await wait_until(finished, 30, "the second worker to finish the run")
    assert time.monotonic() - killed_at < 30
    # The finished POST was not sent again; the unfinished GET was.
    assert sim.calls("POST", "/v1/networks") == 1
    assert [n.name for n in sim.networks.values()] == ["n1"]
    assert sim.calls("GET", "/v1/networks") == 2
    redis = env.redis()
    try:
        runs = await wait_until(lambda: env.event_runs(redis, event_id), 10, "the run record")
    finally:
        await redis.aclose()
    assert runs["provision"]["status"] == "ok"
    statuses = [(s["step"], s["status"]) for s in runs["provision"]["steps"]]
    # Step 0 was done by the killed worker: shown as done earlier, not run again.
    assert statuses == [(0, "done"), (1, "ok"), (2, "ok")]
