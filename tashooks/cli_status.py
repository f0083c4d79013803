"""``tashooks status``: queue depth, live workers, dead letters, rules version, Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiver.keys import Keys
from receiver.settings import SettingsError, load_settings, redact_redis_url

# A worker whose heartbeat (every 5 s) is older than this is not counted as live.
LIVE_S = 20.0


async def collect(url: str, keys: Keys) -> dict[str, Any]:
    """What ``status`` shows, read from Redis."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        started = time.monotonic()
        await client.ping()
        ping_ms = round((time.monotonic() - started) * 1000, 2)
        now_ms = int(time.time() * 1000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.queue)
            pipe.zcount(keys.queue, "-inf", now_ms)
            pipe.zrangebyscore(keys.workers, now_ms - LIVE_S * 1000, "+inf")
            pipe.zcard(keys.deadletter_index)
            pipe.get(keys.rules_version)
            pipe.info("persistence")
            pipe.info("memory")
            queued, due, workers, dead, version, persistence, memory = await pipe.execute()
    finally:
        await client.aclose()
    return {
        "redis": {
            "ok": True,
            "ping_ms": ping_ms,
            "aof": bool(persistence.get("aof_enabled")),
            "used_memory": memory.get("used_memory_human"),
        },
        "queue": {"depth": int(queued), "due": int(due), "deferred": int(queued) - int(due)},
        "workers": sorted(w.decode() for w in workers),
        "deadletters": int(dead),
        "rules_version": version.decode() if version else None,
    }


def _show(status: dict[str, Any]) -> str:
    redis = status["redis"]
    queue = status["queue"]
    workers = status["workers"]
    lines = [
        f"redis        ok ({redis['ping_ms']} ms, {redis['used_memory']}, "
        + ("AOF on" if redis["aof"] else "AOF OFF: acknowledged deliveries can be lost")
        + ")",
        f"queue        {queue['depth']} jobs ({queue['due']} due, {queue['deferred']} deferred)",
        f"workers      {len(workers)} live"
        + (": " + ", ".join(workers) if workers else " - start one with `tashooks worker`"),
        f"dead letters {status['deadletters']}"
        + (" - see `tashooks dlq list`" if status["deadletters"] else ""),
        f"rules        version {status['rules_version'] or 'unknown (no worker has started)'}",
    ]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tashooks: {exc}", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(collect(settings.redis_url, Keys(settings.namespace)))
    except (RedisError, OSError) as exc:
        url = redact_redis_url(settings.redis_url)
        if args.json:  # still one JSON object, for scripts and monitoring
            print(json.dumps({"redis": {"ok": False, "url": url, "error": str(exc)}}))
        print(
            f"tashooks status: Redis at {url} does not answer ({exc}); "
            "check that it runs and TASHOOKS_REDIS_URL",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(status) if args.json else _show(status))
    return 0


def add_status_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tashooks status``."""
    p = sub.add_parser("status", help="queue depth, live workers, dead letters, rules version")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_status)
