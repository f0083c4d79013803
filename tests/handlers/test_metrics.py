"""/metrics covers deliveries, queue depth, dead letters, rule runs, steps and API calls."""

from __future__ import annotations

import re

from tests.handlers.conftest import SLACK_PATH, StackFactory

RULES = """
version: 1
defaults:
  retry: {attempts: 2, initial: 10ms, max: 10ms}
targets:
  ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
rules:
  - name: look
    on: vps.created
    steps:
      - api: {method: GET, path: "/vps"}
  - name: tell
    on: vps.deleted
    steps:
      - slack: {target: ops, text: "gone"}
"""


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics")


async def test_metrics_after_real_runs(make_stack: StackFactory) -> None:
    stack = await make_stack(RULES)
    stack.slack.fail(SLACK_PATH, status=500, count=None)
    ok = await stack.send("vps.created", id="vps_1")
    failed = await stack.send("vps.deleted", id="vps_2")
    other = await stack.send("made.up", id="x")
    for event_id in (ok, failed, other):
        await stack.wait_runs(event_id)
    text = (await stack.http.get(stack.url.replace("webhooks", "metrics"))).text
    assert (
        value(text, "tashooks_deliveries_total", outcome="accepted", event_type="vps.created") == 1
    )
    assert value(text, "tashooks_deliveries_total", outcome="accepted", event_type="other") == 1
    assert value(text, "tashooks_rule_runs_total", rule="look", status="ok") == 1
    assert value(text, "tashooks_rule_runs_total", rule="tell", status="failed") == 1
    assert value(text, "tashooks_steps_total", step_type="slack", status="failed") == 1
    assert value(text, "tashooks_step_duration_seconds_count", step_type="api") == 1
    assert value(text, "tashooks_api_calls_total", method="GET", status="200") == 1
    assert value(text, "tashooks_deadletters") == 1
    assert value(text, "tashooks_queue_depth") == 0


async def test_status_command_shows_the_running_system(make_stack: StackFactory) -> None:
    import asyncio
    import hashlib
    import json
    import os
    import subprocess
    import sys

    stack = await make_stack(RULES)
    stack.slack.fail(SLACK_PATH, status=500, count=None)
    await stack.wait_runs(await stack.send("vps.deleted", id="vps_2"))
    env = {**os.environ, "TASHOOKS_REDIS_URL": stack.settings.redis_url}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tashooks.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["redis"]["ok"] and status["redis"]["aof"]
    assert status["queue"]["depth"] == 0
    assert len(status["workers"]) == 1
    assert status["deadletters"] == 1
    digest = hashlib.sha256(stack.settings.rules.read_bytes()).hexdigest()
    assert status["rules_version"] == digest[:12]
    text = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tashooks.cli", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "1 live" in text.stdout and "tashooks dlq list" in text.stdout
