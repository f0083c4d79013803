"""Fault tests: real processes (workers, serve) killed and signalled, Redis stopped and
killed, the simulated API slow or failing. Each test stops by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from receiver.keys import Keys
from receiver.settings import Settings, load_settings
from receiver.signatures import sign
from tashooks.daemon import run_daemon
from tashooks.redisproc import RedisProcess, free_port
from tashooks.simulator import SimulatorConfig, start_simulator
from tashooks.simulator.app import RunningSimulator
from tashooks.slackstub import RunningStub, start_slack_stub

API_KEY = "fault-key"
SECRET = "fault-secret"


def event_body(event: str, ts: datetime | None = None, **data: Any) -> bytes:
    stamp = (ts or datetime.now(UTC)).isoformat()
    return json.dumps({"event": event, "timestamp": stamp, "data": data}).encode()


@dataclass
class Env:
    """One test's world: its own Redis, simulator, Slack/sink stub, rules and settings."""

    redis_proc: RedisProcess
    sim: RunningSimulator
    stub: RunningStub
    tmp: Path
    rules: Path
    keys: Keys = field(default_factory=Keys)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TASHOOKS_REDIS_URL": self.redis_proc.url,
            "TASHOOKS_WEBHOOK_SECRET": SECRET,
            "TASHOOKS_API_URL": self.sim.url,
            "TASHOOKS_API_KEY": API_KEY,
            "TASHOOKS_RULES": str(self.rules),
            "TASHOOKS_DATA_DIR": str(self.tmp / "data"),
            "TASHOOKS_PORT": str(self.port),
            "TASHOOKS_POLL_DELAY": "0.02",
            "SINK_URL": self.stub.url_for("/sink/out"),
            **extra,
        }

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(
            **{
                "redis_url": self.redis_proc.url,
                "webhook_secret": SECRET,
                "api_url": self.sim.url,
                "api_key": API_KEY,
                "rules": self.rules,
                "data_dir": self.tmp / "data",
                "port": self.port,
                "poll_delay": 0.02,
                **overrides,
            }
        )

    def spawn(self, command: str, **extra: str) -> subprocess.Popen[str]:
        """Run ``tashooks COMMAND`` as a separate process (its output to a log file)."""
        log = open(self.tmp / f"{command}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tashooks.cli", command],
            env=self.environ(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("*.log")))

    async def start_receiver(self, **overrides: Any) -> None:
        """The receiver in this test's event loop."""
        await self._start(self.settings(**overrides), receiver=True, worker=False)

    async def start_worker(self, **overrides: Any) -> None:
        """A worker in this test's event loop (several may run)."""
        await self._start(self.settings(**overrides), receiver=False, worker=True)

    async def _start(self, settings: Settings, *, receiver: bool, worker: bool) -> None:
        from handlers.rules import load_rules

        rules = load_rules(self.rules, env=self.environ()) if worker else None
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_daemon(
                settings,
                receiver=receiver,
                worker=worker,
                rules=rules,
                stop=stop,
                started=started,
                install_signals=False,
                grace_s=2.0,
            )
        )
        self.tasks.append((stop, task))
        await asyncio.wait(
            [asyncio.create_task(started.wait()), task], return_when=asyncio.FIRST_COMPLETED
        )
        if task.done():
            task.result()

    async def post(self, client: httpx.AsyncClient, body: bytes) -> httpx.Response:
        return await client.post(
            self.url, content=body, headers={"X-Signature": sign(body, SECRET)}
        )

    def redis(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis_proc.url)

    async def event_runs(self, redis: aioredis.Redis, event_id: str) -> dict[str, Any]:
        fields = await redis.hgetall(self.keys.event(event_id))
        return {k.decode()[4:]: json.loads(v) for k, v in fields.items() if k.startswith(b"run:")}

    async def close(self) -> None:
        for stop, task in reversed(self.tasks):
            stop.set()
            try:
                await asyncio.wait_for(task, 15)
            except Exception:  # a test that broke Redis may leave a daemon erroring
                task.cancel()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def fault_redis() -> Iterator[RedisProcess]:
    """A Redis of this test's own (AOF, fsync on every write), free to stop and kill."""
    server = RedisProcess(appendfsync="always").start()
    yield server
    server.close()


@pytest.fixture
async def make_env(
    fault_redis: RedisProcess, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    envs: list[Env] = []

    async def factory(rules_yaml: str, **sim_options: Any) -> Env:
        sim = await start_simulator(
            SimulatorConfig(api_key=API_KEY, rate_limit=0, **sim_options), "127.0.0.1", 0
        )
        stub = await start_slack_stub("127.0.0.1", 0)
        rules = tmp_path / "rules.yaml"
        rules.write_text(textwrap.dedent(rules_yaml))
        (tmp_path / "data").mkdir(exist_ok=True)
        env = Env(fault_redis, sim, stub, tmp_path, rules)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        await env.close()
        await env.sim.close()
        await env.stub.close()


def stop_process(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30
) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)
