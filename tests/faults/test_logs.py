"""No secret reaches a log line, even at DEBUG."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx

from tests.faults.conftest import API_KEY, SECRET, Env, event_body, stop_process, wait_until

SLACK_TOKEN = "xoxSECRETwebhookTOKEN42"
ADMIN_TOKEN = "admin-token-that-must-not-leak"


async def test_secrets_stay_out_of_the_logs(make_env: Callable[..., Awaitable[Env]]) -> None:
    env = await make_env("""
        version: 1
        targets:
          ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
        rules:
          - name: tell
            on: vps.status_changed
            steps:
              - api: {method: GET, path: "/vps"}
              - slack: {target: ops, text: "{{ event.data.name }} is {{ event.data.status }}"}
              - log: {message: "told ops about {{ event.data.name }}"}
    """)
    slack_url = env.stub.url_for(f"/services/T1/B1/{SLACK_TOKEN}")
    proc = env.spawn(
        "serve",
        TASHOOKS_LOG_LEVEL="DEBUG",
        TASHOOKS_LOG_FORMAT="json",
        TASHOOKS_ADMIN_TOKEN=ADMIN_TOKEN,
        SLACK_URL=slack_url,
    )
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def accepted() -> bool:
            try:
                resp = await env.post(
                    client,
                    event_body("vps.status_changed", id="vps_1", name="web-1", status="stopped"),
                )
            except httpx.HTTPError:
                return False
            return resp.status_code == 202

        await wait_until(accepted, 20, "serve to accept a delivery")
        await env.post(client, event_body("vps.created", id="x"))  # no rule: still logged
        await client.post(env.url, content=b"{}", headers={"X-Signature": "00"})
    await env.stub.wait_for_messages(1, max_wait=20)
    assert await asyncio.to_thread(stop_process, proc) == 0
    logs = env.logs()
    records = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert {"debug", "info"} <= {r["level"] for r in records}  # it did log, verbosely
    for secret in (SLACK_TOKEN, SECRET, API_KEY, ADMIN_TOKEN):
        assert secret not in logs, secret
    # Lines about an event carry its id (the worker's and the receiver's alike).
    about_events = [r for r in records if r.get("event_id")]
    assert {r["logger"] for r in about_events} >= {"tashooks.receiver", "tashooks.rules"}
    accepted = [r for r in records if r["message"] == "delivery accepted"]
    assert accepted and all(r["event_id"].startswith("evt_") and r["request_id"] for r in accepted)


async def test_a_worker_serves_its_own_metrics(make_env: Callable[..., Awaitable[Env]]) -> None:
    from tashooks.redisproc import free_port

    env = await make_env("""
        version: 1
        rules:
          - name: note
            on: x.y
            steps:
              - log: {message: "hi"}
    """)
    await env.start_receiver()
    port = free_port()
    proc = env.spawn("worker", TASHOOKS_METRICS_PORT=str(port))
    async with httpx.AsyncClient(timeout=5.0) as client:
        assert (await env.post(client, event_body("x.y", n=1))).status_code == 202

        async def counted() -> bool:
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                return False
            return 'tashooks_rule_runs_total{rule="note",status="ok"} 1.0' in text

        await wait_until(counted, 20, "the worker's metrics to count the run")
    assert await asyncio.to_thread(stop_process, proc) == 0
