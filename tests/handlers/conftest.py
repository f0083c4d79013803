"""A whole tashooks on loopback for worker tests: Redis, the simulator as the API, the
Slack stand-in, and the daemon (receiver + worker) running a rules file of the test's."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from handlers.rules import load_rules
from receiver.keys import Keys
from receiver.settings import Settings, load_settings
from receiver.signatures import sign
from tashooks.daemon import run_daemon
from tashooks.redisproc import free_port
from tashooks.simulator import SimulatorConfig, start_simulator
from tashooks.simulator.app import RunningSimulator
from tashooks.slackstub import RunningStub, start_slack_stub

API_KEY = "worker-test-key"
SECRET = "worker-test-secret"
SLACK_PATH = "/services/T1/B1/hook"


@dataclass
class Stack:
    settings: Settings
    sim: RunningSimulator
    slack: RunningStub
    redis: aioredis.Redis
    keys: Keys
    http: httpx.AsyncClient

    @property
    def base(self) -> str:
        """The receiver's root URL (the admin API lives there with ``admin_token=...``)."""
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/webhooks"

    async def create_cluster(self, name: str) -> dict[str, Any]:
        """Create a cluster through the simulated API (kubernetes.ready follows)."""
        created = await self.http.post(
            f"{self.sim.url}/kubernetes",
            json={
                "name": name,
                "version": "1.29",
                "node_pools": [{"name": "p", "size": "standard-4vcpu-8gb", "count": 1}],
            },
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        cluster: dict[str, Any] = created.json()
        return cluster

    async def send(self, event: str, **data: Any) -> str:
        """Post a signed delivery; return the event id (asserts 202)."""
        doc = {"event": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        body = json.dumps(doc).encode()
        resp = await self.http.post(
            self.url, content=body, headers={"X-Signature": sign(body, SECRET)}
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    async def audit(self, event_id: str | None = None) -> list[dict[str, str]]:
        records = [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in await self.redis.xrange(self.keys.audit)
        ]
        return [r for r in records if event_id is None or r.get("id") == event_id]

    async def runs(self, event_id: str) -> list[dict[str, str]]:
        return [r for r in await self.audit(event_id) if r["kind"] == "run"]

    async def wait_runs(
        self, event_id: str, n: int = 1, max_wait: float = 15.0
    ) -> list[dict[str, str]]:
        """Wait until ``n`` rule runs of the event have ended (ok, failed, ...)."""
        deadline = time.monotonic() + max_wait
        while True:
            runs = await self.runs(event_id)
            if len(runs) >= n:
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(runs)} of {n} runs ended: {await self.audit(event_id)}"
                )
            await asyncio.sleep(0.02)

    async def deadletters(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.deadletters)
        return sorted((json.loads(v) for v in raw.values()), key=lambda d: d["failed_at_ms"])


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(redis_url: str, tmp_path: Path) -> AsyncIterator[StackFactory]:
    """``await make_stack(rules_yaml, **settings)``: start everything with that rules file;
    keyword arguments override settings (e.g. ``admin_token="t"`` turns the admin API on).
    ``watch_rules=True``: the worker loads the file itself (``${NAME}`` from the process's
    environment) and reloads it when it changes, as ``tashooks worker`` does."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def factory(rules_yaml: str, watch_rules: bool = False, **overrides: Any) -> Stack:
        sim = await start_simulator(
            SimulatorConfig(api_key=API_KEY, boot_delay=0.05, ready_delay=0.05), "127.0.0.1", 0
        )
        cleanups.append(sim.close)
        slack = await start_slack_stub("127.0.0.1", 0)
        cleanups.append(slack.close)
        env = {"SLACK_URL": slack.url_for(SLACK_PATH), "SINK_URL": slack.url_for("/sink/audit")}
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(textwrap.dedent(rules_yaml))
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        settings = load_settings(
            **{
                "redis_url": redis_url,
                "webhook_secret": SECRET,
                "api_url": sim.url,
                "api_key": API_KEY,
                "port": free_port(),
                "data_dir": data_dir,
                "rules": rules_file,
                "poll_delay": 0.02,
                **overrides,
            }
        )
        rules = None if watch_rules else load_rules(rules_file, env=env)
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(
            run_daemon(
                settings,
                rules=None if watch_rules else rules,
                stop=stop,
                started=started,
                install_signals=False,
                grace_s=2.0,
            )
        )

        async def stop_daemon() -> None:
            stop.set()
            await task

        cleanups.append(stop_daemon)
        await asyncio.wait(
            [asyncio.create_task(started.wait()), task], return_when=asyncio.FIRST_COMPLETED
        )
        if task.done():
            task.result()
        redis = aioredis.Redis.from_url(redis_url)
        cleanups.append(redis.aclose)
        http = httpx.AsyncClient(timeout=10.0)
        cleanups.append(http.aclose)
        return Stack(settings, sim, slack, redis, Keys(settings.namespace), http)

    yield factory
    for cleanup in reversed(cleanups):
        await cleanup()
