"""(e) SIGTERM: the worker stops taking jobs, lets running ones finish within the grace
period and exits 0; the receiver stops accepting and drains."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from tests.faults.conftest import Env, event_body, stop_process, wait_until

SLOW_RULES = """
version: 1
defaults: {timeout: 60s}
rules:
  - name: slow
    on: job.start
    ordered: false
    steps:
      - api: {method: GET, path: "/vps"}
      - file: {path: "done-{{ event.data.n }}.txt", content: "ok"}
"""


async def _started(env: Env) -> None:
    async def slow_call_started() -> bool:
        return any(r.path == "/v1/vps" for r in env.sim.state.requests)

    await wait_until(slow_call_started, 20, "the slow step to start")


async def _wait_ready(env: Env) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                resp = await client.get(env.url.replace("webhooks", "readyz"))
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(ready, 20, "serve to be ready")


async def test_sigterm_lets_running_jobs_finish(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env(SLOW_RULES)
    env.sim.state.add_fault("/v1/vps", method="GET", delay=2.0, count=1)
    proc = env.spawn("serve", TASHOOKS_SHUTDOWN_GRACE="20s")
    await _wait_ready(env)
    async with httpx.AsyncClient() as client:
        assert (await env.post(client, event_body("job.start", n=1))).status_code == 202
    await _started(env)
    started = time.monotonic()
    code = await asyncio.to_thread(stop_process, proc)
    assert code == 0, env.logs()
    assert (env.tmp / "data" / "done-1.txt").exists()  # the running job finished first
    assert 1.0 < time.monotonic() - started < 20
    async with httpx.AsyncClient() as client:  # and nothing listens any more
        try:
            await env.post(client, event_body("job.start", n=2))
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the receiver still accepted after SIGTERM")


async def test_job_past_grace_is_run_again_by_the_next_worker(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(SLOW_RULES)
    env.sim.state.add_fault("/v1/vps", method="GET", delay=30.0, count=1)
    await env.start_receiver()
    worker = env.spawn("worker", TASHOOKS_SHUTDOWN_GRACE="1s")
    async with httpx.AsyncClient() as client:
        assert (await env.post(client, event_body("job.start", n=3))).status_code == 202
    await _started(env)
    started = time.monotonic()
    assert await asyncio.to_thread(stop_process, worker) == 0, env.logs()
    assert time.monotonic() - started < 10
    assert not (env.tmp / "data" / "done-3.txt").exists()
    env.spawn("worker")

    async def done() -> bool:
        return (env.tmp / "data" / "done-3.txt").exists()

    await wait_until(done, 30, "the next worker to run the cancelled job")


async def test_receiver_drains_a_request_in_flight(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(SLOW_RULES)
    proc = env.spawn("receiver")
    await _wait_ready(env)
    redis = env.redis()
    try:
        # Redis holds every client's commands for 1.5 s: the delivery is in flight when
        # SIGTERM arrives, and must still be stored and acknowledged.
        await redis.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        async with httpx.AsyncClient(timeout=10) as client:
            request = asyncio.create_task(env.post(client, event_body("job.start", n=4)))
            await asyncio.sleep(0.3)
            stopping = asyncio.create_task(asyncio.to_thread(stop_process, proc))
            response = await request
            assert response.status_code == 202, response.text
            assert await stopping == 0, env.logs()
        event_id = response.json()["id"]
        assert await redis.zscore(env.keys.queue, event_id) is not None
    finally:
        await redis.aclose()
