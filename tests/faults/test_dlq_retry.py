"""(d) A step that exhausts its retries lands in the dead-letter list; once the cause is
fixed, `tashooks dlq retry` completes the run, without repeating finished steps."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable

import httpx

from tests.faults.conftest import Env, event_body, wait_until

RULES = """
version: 1
defaults:
  retry: {attempts: 3, initial: 50ms, max: 100ms}
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
"""


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tashooks.cli", *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_dead_letter_then_dlq_retry_completes(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(RULES)
    env.sim.state.add_fault("/v1/networks", method="GET", status=503, count=None)
    await env.start_receiver()
    await env.start_worker()
    async with httpx.AsyncClient() as client:
        event_id = (await env.post(client, event_body("job.start", name="n1"))).json()["id"]
    redis = env.redis()
    try:
        runs = await wait_until(lambda: env.event_runs(redis, event_id), 20, "the run to end")
        assert runs["provision"]["status"] == "failed"
        listed = await asyncio.to_thread(cli, env, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        [dead] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert dead["event_id"] == event_id and dead["attempts"] == 3
        gets = env.sim.state.calls("GET", "/v1/networks")
        assert gets == 3

        env.sim.state.clear_faults()
        retried = await asyncio.to_thread(cli, env, "dlq", "retry", dead["id"])
        assert retried.returncode == 0, retried.stderr

        async def completed() -> bool:
            runs = await env.event_runs(redis, event_id)
            return runs.get("provision", {}).get("status") == "ok"

        await wait_until(completed, 20, "the retried run to complete")
        assert env.sim.state.calls("POST", "/v1/networks") == 1  # not repeated
        assert env.sim.state.calls("GET", "/v1/networks") == gets + 1
        assert (await asyncio.to_thread(cli, env, "dlq", "list")).stdout.strip() == ""
    finally:
        await redis.aclose()
