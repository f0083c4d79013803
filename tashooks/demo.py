"""``tashooks demo``: the whole thing, locally, in one command.

Redis (the one at TASHOOKS_REDIS_URL, else a throwaway redis-server), the simulated
tasmanian.cloud API, a stand-in for Slack, and the daemon with the example rules; it
registers the webhook, creates a cluster and a VPS, shows what the rules did, and stops
everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from handlers.exceptions import RulesError
from handlers.rules import RuleSet, load_rules
from receiver.keys import Keys
from receiver.settings import SettingsError, load_settings
from tashooks.daemon import run_daemon
from tashooks.logs import setup_logging
from tashooks.redisproc import RedisProcess, RedisServerError, free_port
from tashooks.register import register_webhook
from tashooks.simulator import SimulatorConfig, start_simulator
from tashooks.slackstub import RunningStub, StubRequest, start_slack_stub


def say(message: str) -> None:
    print(message, flush=True)


def step(message: str) -> None:
    say(f"» {message}")


async def _redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _redis(url: str) -> AsyncIterator[str]:
    if await _redis_answers(url):
        step(f"using the Redis at {url}")
        yield url
        return
    step(f"no Redis answers at {url}: starting a throwaway redis-server")
    # Started from this (the main) thread, so that it dies with the demo even on kill -9.
    server = RedisProcess(appendfsync="everysec", die_with_parent=True).start()
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.close)


async def _wait_for(what: str, check: Callable[[], Any], deadline: float) -> Any:
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def _clean_namespace(url: str, namespace: str) -> None:
    """Delete the demo's keys: its namespace, and arq's keys of the jobs it left queued
    (``arq:job:<id>`` and the like sit outside any namespace)."""
    client = aioredis.Redis.from_url(url)
    try:
        names = Keys(namespace)
        job_ids = await client.zrange(names.queue, 0, -1)
        keys: list[bytes | str] = [
            k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)
        ]
        keys += [key for job_id in job_ids for key in names.job_keys(job_id.decode())]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def run_demo(rules: Path | None = None, timeout: float = 30.0, verbose: bool = False) -> int:
    """Run the demo; return the exit code (0 when every expected effect was seen)."""
    setup_logging("INFO" if verbose else "WARNING", "text")
    try:
        base = load_settings()
    except SettingsError as exc:
        say(f"tashooks demo: {exc}")
        return 2
    # The example rules (what the demo waits for), not TASHOOKS_RULES: a user's own rules
    # would leave it waiting for effects they do not produce.
    rules_path = rules or Path("rules.yaml")
    if not rules_path.is_file():
        say(
            f"tashooks demo: {rules_path} not found; run it from the repository root "
            "(where rules.yaml is) or pass --rules FILE"
        )
        return 2
    # A namespace of its own: the demo never touches another installation's keys or jobs.
    namespace = f"tashooks-demo-{secrets.token_hex(4)}"
    try:
        async with _redis(base.redis_url) as redis_url:
            try:
                return await _demo(base.data_dir, redis_url, namespace, rules_path, timeout)
            finally:
                await _clean_namespace(redis_url, namespace)
    except RedisServerError as exc:
        say(f"tashooks demo: {exc}")
        return 1


async def _demo(
    data_dir: Path, redis_url: str, namespace: str, rules_path: Path, timeout: float
) -> int:
    api_key = "demo-" + secrets.token_hex(8)
    slack = await start_slack_stub("127.0.0.1", 0)
    sim = await start_simulator(SimulatorConfig(api_key=api_key), "127.0.0.1", 0)
    stop = asyncio.Event()
    daemon: asyncio.Task[None] | None = None
    try:
        step(f"simulated tasmanian.cloud API at {sim.url}")
        slack_url = slack.url_for("/services/T0DEMO/B0DEMO/demo-token")
        sink_url = slack.url_for("/sink/audit")
        step(f"Slack stand-in at {slack.url_for('/services/…')}, audit sink at {sink_url}")
        async with httpx.AsyncClient(
            base_url=sim.url, headers={"Authorization": f"Bearer {api_key}"}
        ) as api:
            network = (
                await api.post("/networks", json={"name": "default", "cidr": "10.0.0.0/24"})
            ).json()
            env = {
                **os.environ,
                "SLACK_WEBHOOK_URL": slack_url,
                "AUDIT_SINK_URL": sink_url,
                "DEFAULT_NETWORK_ID": network["id"],
            }
            try:
                ruleset = load_rules(rules_path, env=env)
            except RulesError as exc:
                say(
                    f"{exc}\ntashooks demo: {rules_path} does not validate; fix it "
                    f"(tashooks check {rules_path})"
                )
                return 1
            step(
                f"loaded {len(ruleset.rules)} rules from {rules_path}: "
                + ", ".join(r.name for r in ruleset.rules)
            )
            ruleset = _allow_stand_ins(ruleset, slack.url_for("/"))
            secret = secrets.token_urlsafe(24)
            port = free_port()
            settings = load_settings(
                redis_url=redis_url,
                namespace=namespace,
                webhook_secret=secret,
                api_url=sim.url,
                api_key=api_key,
                host="127.0.0.1",
                port=port,
                data_dir=data_dir,
                rules=rules_path,
            )
            started = asyncio.Event()
            daemon = asyncio.create_task(
                run_daemon(
                    settings,
                    rules=ruleset,
                    stop=stop,
                    started=started,
                    install_signals=False,
                    grace_s=5.0,
                )
            )
            await asyncio.wait(
                [asyncio.create_task(started.wait()), daemon], return_when=asyncio.FIRST_COMPLETED
            )
            if daemon.done():
                daemon.result()
            receiver_url = f"http://127.0.0.1:{port}/webhooks"
            step(f"tashooks receiver and worker running; webhook URL {receiver_url}")
            hook = await register_webhook(sim.url, api_key, receiver_url, secret=secret)
            step(f"registered the webhook with the platform ({hook.get('id', '?')})")

            cluster = (
                await api.post(
                    "/kubernetes",
                    json={
                        "name": "demo-cluster",
                        "version": "1.29",
                        "node_pools": [
                            {"name": "default", "size": "standard-4vcpu-8gb", "count": 3}
                        ],
                    },
                )
            ).json()
            step(f"created cluster {cluster['name']} ({cluster['id']})")
            vps = (
                await api.post(
                    "/vps",
                    json={
                        "name": "web-1",
                        "size": "standard-2vcpu-4gb",
                        "image": "ubuntu-24.04",
                    },
                )
            ).json()
            step(f"created VPS {vps['name']} ({vps['id']})")

            deadline = time.monotonic() + timeout
            kubeconfig = data_dir.absolute() / "kubeconfigs" / f"{cluster['id']}.yaml"  # noqa: ASYNC240
            try:
                await _wait_for(
                    "the VPS to boot", lambda: _vps_status(sim, vps["id"]) == "running", deadline
                )
                await api.post(f"/vps/{vps['id']}/actions", json={"action": "shutdown"})
                step(f"shut down VPS {vps['name']}")
                await _wait_for("the kubeconfig file", kubeconfig.is_file, deadline)
                await _wait_for("two Slack messages", lambda: len(slack.messages) >= 2, deadline)
                await _wait_for(
                    "the VPS attached to the network",
                    lambda: vps["id"] in _network_members(sim, network["id"]),
                    deadline,
                )
                await _wait_for(
                    "VPS events at the audit sink", lambda: len(_sink(slack)) >= 3, deadline
                )
            except TimeoutError as exc:
                say(
                    f"\n✗ gave up after {timeout:.0f}s waiting for {exc}. Run with -v to see "
                    f"the daemon's log, and check that {rules_path} has the example rules "
                    "(the repository's rules.yaml) that produce it."
                )
                return 1

            say("\nWhat the rules did:")
            text = await asyncio.to_thread(kubeconfig.read_text)
            say(
                f"  save-kubeconfig  wrote {kubeconfig} "
                f"({len(text)} bytes, mode {oct(kubeconfig.stat().st_mode & 0o777)})"
            )
            for line in text.splitlines()[:6]:
                say(f"                   | {line}")
            for message in slack.messages:
                say(f"  slack            {message.text}")
            say(f"  attach-web-vps   {vps['id']} is now on network {network['id']}")
            say(
                f"  audit-vps        the audit sink received {len(_sink(slack))} VPS events: "
                + ", ".join(str((r.json or {}).get("event")) for r in _sink(slack))
            )
            say("\n✓ demo finished: everything it started is stopped.")
            return 0
    finally:
        stop.set()
        if daemon is not None:
            with contextlib.suppress(Exception):
                await daemon
        await sim.close()
        await slack.close()


def _allow_stand_ins(ruleset: RuleSet, base_url: str) -> RuleSet:
    """The rules with ``allow_private`` on the targets that point at the local stand-ins.

    Targets reach only public addresses unless they say ``allow_private: true``; the
    example rules.yaml is written for real Slack and a real audit sink, so it does not.
    """
    targets = {
        name: replace(target, allow_private=True) if target.url.startswith(base_url) else target
        for name, target in ruleset.targets.items()
    }
    allowed = [name for name, target in targets.items() if target.allow_private]
    if allowed:
        step(f"targets {', '.join(allowed)} point at this machine: allow_private for the demo")
    return replace(ruleset, targets=targets)


def _vps_status(sim: Any, vps_id: str) -> str | None:
    vps = sim.state.vps.get(vps_id)
    return getattr(vps, "status", None)


def _network_members(sim: Any, network_id: str) -> list[str]:
    network = sim.state.networks.get(network_id)
    return list(getattr(network, "vps_ids", []) or [])


def _sink(slack: RunningStub) -> list[StubRequest]:
    return slack.state.sink_requests("audit")


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo()))
