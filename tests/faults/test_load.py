"""(f) 50 events at once against a slow API with a small connection pool, and (g) 5,000
deliveries one after another with a flat number of Redis connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.faults.conftest import Env, event_body, wait_until

SLOW_API_RULES = """
version: 1
defaults:
  timeout: 60s
  retry: {attempts: 10, initial: 200ms, max: 2s}
rules:
  - name: look
    on: job.start
    ordered: false
    steps:
      - api: {method: GET, path: "/vps"}
"""


async def test_fifty_events_against_a_slow_api(
    make_env: Callable[..., Awaitable[Env]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tashooks.client")
    env = await make_env(SLOW_API_RULES)
    env.sim.state.add_fault("/v1/vps", method="GET", delay=3.0, count=None)
    await env.start_receiver()
    # 10 connections for 50 jobs: later waves wait for a connection longer than one pool
    # wait lasts, and those requests must go on waiting, not fail or get lost.
    await env.start_worker(api_max_connections=10)
    async with httpx.AsyncClient(timeout=10.0) as client:
        responses = await asyncio.gather(
            *(env.post(client, event_body("job.start", n=n)) for n in range(50))
        )
    ids = [r.json()["id"] for r in responses]
    assert [r.status_code for r in responses] == [202] * 50
    redis = env.redis()
    try:

        async def all_done() -> bool:
            runs = [await env.event_runs(redis, i) for i in ids]
            return all("look" in r for r in runs)

        await wait_until(all_done, 90, "all 50 runs")
        runs = [(await env.event_runs(redis, i))["look"] for i in ids]
    finally:
        await redis.aclose()
    assert {r["status"] for r in runs} == {"ok"}
    assert {r["steps"][-1]["attempt"] for r in runs} == {1}  # waiting cost no attempt
    assert any("API connections busy" in r.getMessage() for r in caplog.records), (
        "no request waited past a pool timeout; the test lost its point"
    )
    assert env.sim.state.calls("GET", "/v1/vps") == 50


async def test_connections_stay_flat_over_5000_deliveries(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env("""
        version: 1
        rules:
          - name: count
            on: tick
            ordered: false
            steps:
              - log: {message: "{{ event.data.n }}"}
    """)
    await env.start_receiver()
    await env.start_worker()
    redis = env.redis()
    samples: list[int] = []
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            for n in range(5000):
                resp = await env.post(client, event_body("tick", n=n))
                assert resp.status_code == 202
                if n % 500 == 499:
                    samples.append(int((await redis.info("clients"))["connected_clients"]))

        async def drained() -> bool:
            return await redis.zcard(env.keys.queue) == 0

        await wait_until(drained, 60, "the worker to drain the queue")
        samples.append(int((await redis.info("clients"))["connected_clients"]))
    finally:
        await redis.aclose()
    # No connection per delivery: the count stays bounded by the pools' sizes (a leak
    # would add thousands) and does not keep growing with the number of deliveries.
    assert max(samples) <= 40, samples
    assert samples[-1] <= max(samples[:5]) + 10, samples
