"""Rules reload on a file change and on SIGHUP; a bad file is refused, the last good rules
keep running, and the running version is recorded."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from handlers.rules import load_rules
from tests.faults.conftest import Env, event_body, stop_process, wait_until


def rules_writing(tag: str) -> str:
    return textwrap.dedent(f"""
        version: 1
        rules:
          - name: write
            on: x.y
            ordered: false
            steps:
              - file: {{path: "{tag}-{{{{ event.data.n }}}}.txt", content: "{tag}"}}
    """)


async def test_reload_on_change_and_sighup_keeps_last_good(
    make_env: Callable[..., Awaitable[Env]],
) -> None:
    env = await make_env(rules_writing("one"))
    data: Path = env.tmp / "data"
    proc = env.spawn("serve")
    redis = env.redis()
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:

            async def sent(n: int) -> bool:
                try:
                    resp = await env.post(client, event_body("x.y", n=n))
                except httpx.HTTPError:
                    return False
                return resp.status_code == 202

            await wait_until(lambda: sent(1), 20, "serve to accept")
            await wait_until(lambda: _exists(data / "one-1.txt"), 20, "rules one to run")
            first = (await redis.get(env.keys.rules_version)).decode()
            assert first == load_rules(env.rules).version_hash
            readyz = await client.get(env.url.replace("webhooks", "readyz"))
            assert readyz.json()["rules_version"] == first

            env.rules.write_text(rules_writing("two"))  # a change is picked up by itself
            second = load_rules(env.rules).version_hash

            async def version_is(v: str) -> bool:
                return (await redis.get(env.keys.rules_version)).decode() == v

            await wait_until(lambda: version_is(second), 10, "the changed file to load")
            assert await sent(2)
            await wait_until(lambda: _exists(data / "two-2.txt"), 20, "rules two to run")

            env.rules.write_text("version: 1\nrules:\n  - name: broken\n    on: x.y\n")
            await asyncio.sleep(2.5)  # watched and refused
            proc.send_signal(signal.SIGHUP)  # and refused again on request
            await asyncio.sleep(0.5)
            assert await sent(3)
            await wait_until(lambda: _exists(data / "two-3.txt"), 20, "the last good rules")
            assert await version_is(second)
        records = [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in await redis.xrange(env.keys.audit)
        ]
    finally:
        await redis.aclose()
    loads = [(r["status"], r["reason"]) for r in records if r["kind"] == "rules"]
    assert loads[:2] == [("loaded", "start"), ("loaded", "file changed")]
    assert ("refused", "file changed") in loads and ("refused", "SIGHUP") in loads
    refused = next(r for r in records if r["kind"] == "rules" and r["status"] == "refused")
    assert refused["version"] == second and "steps" in refused["errors"]
    assert await asyncio.to_thread(stop_process, proc) == 0
    assert "refused" in env.logs()


async def _exists(path: Path) -> bool:
    return path.exists()
