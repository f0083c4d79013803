"""Per-resource order with several workers and shuffled deliveries."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.faults.conftest import Env, event_body, wait_until

RULES = """
version: 1
targets:
  out: {type: http, url: "${SINK_URL}", allow_private: true}
rules:
  - name: in-order
    on: vps.status_changed
    steps:
      - http:
          target: out
          json: {rule: "in-order", id: "{{ event.data.id }}", n: "{{ event.data.n }}"}
  - name: every-one
    on: vps.status_changed
    ordered: false
    steps:
      - http:
          target: out
          json: {rule: "every-one", id: "{{ event.data.id }}", n: "{{ event.data.n }}"}
"""


async def test_shuffled_events_run_in_timestamp_order_per_resource(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(RULES)
    await env.start_receiver()
    for _ in range(3):
        await env.start_worker()
    base = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [
        event_body("vps.status_changed", ts=base + timedelta(seconds=n), id=f"vps_{r}", n=n)
        for r in range(5)
        for n in range(10)
    ]
    random.Random(7).shuffle(bodies)
    async with httpx.AsyncClient(timeout=10.0) as client:
        responses = await asyncio.gather(*(env.post(client, body) for body in bodies))
    assert [r.status_code for r in responses] == [202] * 50
    ids = [r.json()["id"] for r in responses]
    redis = env.redis()
    try:

        async def all_ran() -> bool:
            runs = [await env.event_runs(redis, i) for i in ids]
            return all(len(r) == 2 for r in runs)

        await wait_until(all_ran, 60, "both rules to end for all 50 events")
        runs = [await env.event_runs(redis, i) for i in ids]
        # Every lock was let go when its run ended (none left to expire).
        await asyncio.sleep(0.2)
        assert [k async for k in redis.scan_iter(match="*:resource:*:lock")] == []
    finally:
        await redis.aclose()

    received = [r.json for r in env.stub.state.sink_requests("out")]
    ordered: dict[str, list[int]] = defaultdict(list)
    for doc in received:
        if doc["rule"] == "in-order":
            ordered[doc["id"]].append(int(doc["n"]))
    for resource, sequence in ordered.items():
        assert sequence == sorted(sequence), (resource, sequence)
        assert len(set(sequence)) == len(sequence)
        assert sequence[-1] == 9, (resource, sequence)  # the newest always runs
    # Every event ran the unordered rule; the ordered one either ran or was stale.
    assert sum(doc["rule"] == "every-one" for doc in received) == 50
    statuses = [r["in-order"]["status"] for r in runs]
    assert set(statuses) <= {"ok", "stale"}
    assert statuses.count("ok") == sum(len(s) for s in ordered.values())
    assert statuses.count("stale") > 0  # shuffling made some events late
    assert {r["every-one"]["status"] for r in runs} == {"ok"}
