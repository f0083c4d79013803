"""``tashooks events``, ``replay`` and ``dlq`` run as a user runs them: subprocesses
against the suite's Redis, with deliveries stored as the receiver stores them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis as syncredis
import redis.asyncio as aioredis

from receiver.deadletters import DeadLetters
from receiver.events import parse_event
from receiver.ingest import Ingestor
from receiver.keys import Keys
from tashooks.redisproc import RedisProcess, free_port
from tests.cli.test_cli import ROOT, tashooks
from tests.receiver.conftest import make_body

KEYS = Keys()


def env_for(redis_url: str) -> dict[str, str]:
    return {"TASHOOKS_REDIS_URL": redis_url}


def ingest(redis_url: str, event: str, **data: Any) -> str:
    """Store a delivery as the receiver would; return its id."""

    async def store() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            stored = await Ingestor(client, KEYS, 7 * 86400).store(
                parse_event(make_body(event, **data))
            )
            return stored.id
        finally:
            await client.aclose()

    return asyncio.run(store())


def dead_letter(redis_url: str, event_id: str, rule: str | None = "notify") -> str:
    async def add() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            raw = json.loads(make_body("vps.created", id="vps_1"))
            record = {"event_id": event_id, "event": raw, "rule": rule, "error": "boom"}
            return await DeadLetters(client, KEYS).add(record)
        finally:
            await client.aclose()

    return asyncio.run(add())


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_events_lists_json_lines_with_filters(redis_url: str) -> None:
    env = env_for(redis_url)
    first = ingest(redis_url, "vps.created", id="vps_1")
    second = ingest(redis_url, "kubernetes.ready", id="k8s_1")
    third = ingest(redis_url, "vps.deleted", id="vps_1")
    result = tashooks("events", env=env)
    assert result.returncode == 0, result.stderr
    assert [e["id"] for e in lines(result.stdout)] == [third, second, first]
    assert all(e["status"] == "pending" for e in lines(result.stdout))
    result = tashooks("events", "--type", "vps.*", "--limit", "1", env=env)
    assert [e["id"] for e in lines(result.stdout)] == [third]
    result = tashooks("events", "--resource", "k8s_1", "--since", "1h", env=env)
    assert [e["id"] for e in lines(result.stdout)] == [second]
    result = tashooks("events", "--status", "failed", env=env)
    assert result.returncode == 0 and result.stdout == ""
    result = tashooks("events", "--until", "99999d", env=env)  # before the epoch: none
    assert result.returncode == 0 and result.stdout == "", result.stderr
    result = tashooks("events", "--since", "0001-01-01T00:00:00Z", "--limit", "1", env=env)
    assert [e["id"] for e in lines(result.stdout)] == [third], result.stderr
    result = tashooks("events", "--since", "last tuesday", env=env)
    assert result.returncode == 2 and "--since: 'last tuesday' is neither" in result.stderr


def test_events_follow_tails_until_ctrl_c(redis_url: str) -> None:
    before = ingest(redis_url, "vps.created", id="vps_1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tashooks.cli", "events", "--follow", "--since", "1m"],
        cwd=ROOT,
        env={**os.environ, **env_for(redis_url)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["kind"] == "delivery" and first["id"] == before
        after = ingest(redis_url, "vps.deleted", id="vps_1")
        second = json.loads(proc.stdout.readline())
        assert second["id"] == after and second["event"]["event"] == "vps.deleted"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def test_events_follow_rides_out_a_redis_restart() -> None:
    server = RedisProcess(port=free_port()).start()  # AOF always: the records survive
    proc = subprocess.Popen(
        [sys.executable, "-m", "tashooks.cli", "events", "--follow", "--since", "1m"],
        cwd=ROOT,
        env={**os.environ, **env_for(server.url)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = ingest(server.url, "vps.created", id="vps_1")
        assert json.loads(proc.stdout.readline())["id"] == first
        server.stop()
        assert "Redis is unavailable" in proc.stderr.readline()
        assert proc.poll() is None  # still following
        server.start()
        second = ingest(server.url, "vps.deleted", id="vps_1")
        assert json.loads(proc.stdout.readline())["id"] == second  # nothing repeated
        assert "Redis is back" in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        server.close()
    assert proc.returncode == 0


def test_follow_refuses_status(redis_url: str) -> None:
    result = tashooks("events", "--follow", "--status", "ok", env=env_for(redis_url))
    assert result.returncode == 2 and "--status cannot be used with --follow" in result.stderr


def test_replay(redis_url: str) -> None:
    env = env_for(redis_url)
    event_id = ingest(redis_url, "vps.created", id="vps_1")
    result = tashooks("replay", event_id, env=env)
    assert result.returncode == 0, result.stderr
    assert f"job {event_id}:replay:1" in result.stdout
    client = syncredis.Redis.from_url(redis_url)
    try:
        job = json.loads(client.get(KEYS.job(f"{event_id}:replay:1")) or b"null")
    finally:
        client.close()
    assert job["f"] == "process_event" and job["a"][0]["replay"] == 1
    result = tashooks("replay", "evt_01NOPE", env=env)
    assert result.returncode == 1
    assert "no event evt_01NOPE in the last 7d; see `tashooks events`" in result.stderr


def test_dlq_list_retry_purge(redis_url: str) -> None:
    env = env_for(redis_url)
    event_id = ingest(redis_url, "vps.created", id="vps_1")
    # One dead letter per run (event and rule): four rules of the event.
    ids = [dead_letter(redis_url, event_id, rule) for rule in ("notify", "page", "a", "b")]
    result = tashooks("dlq", "list", env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(d["id"] for d in lines(result.stdout)) == sorted(ids)
    assert len(lines(tashooks("dlq", "list", "--limit", "2", env=env).stdout)) == 2

    result = tashooks("dlq", "retry", ids[0], env=env)
    assert result.returncode == 0, result.stderr
    assert f"queued as job {event_id}:notify:retry:1" in result.stdout
    result = tashooks("dlq", "retry", ids[0], env=env)
    assert result.returncode == 1
    assert f"no dead letter {ids[0]}; see `tashooks dlq list`" in result.stderr
    assert tashooks("dlq", "retry", env=env).returncode == 2

    result = tashooks("dlq", "retry", ids[1], env=env)
    assert result.returncode == 0
    result = tashooks("dlq", "purge", env=env)  # no terminal to ask: refuses
    assert result.returncode == 1 and "--yes" in result.stderr
    result = tashooks("dlq", "retry", "--all", env=env)
    assert result.returncode == 0, result.stderr
    assert "2 dead letter(s) queued for retry" in result.stdout
    assert tashooks("dlq", "list", env=env).stdout == ""

    dead_letter(redis_url, event_id)
    newer = dead_letter(redis_url, event_id)  # the same run failed again: replaces it
    assert [d["id"] for d in lines(tashooks("dlq", "list", env=env).stdout)] == [newer]
    result = tashooks("dlq", "purge", "--yes", env=env)
    assert result.returncode == 0 and "deleted 1 dead letter(s)" in result.stdout
    assert tashooks("dlq", "purge", env=env).stdout.strip() == "no dead letters"


def test_unreachable_redis_says_what_to_check() -> None:
    env = {"TASHOOKS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = tashooks("events", env=env)
    assert result.returncode == 1
    assert "is unreachable" in result.stderr and "TASHOOKS_REDIS_URL" in result.stderr


def test_options_that_would_be_ignored_are_refused(redis_url: str) -> None:
    env = env_for(redis_url)
    result = tashooks("events", "--follow", "--limit", "5", env=env)
    assert result.returncode == 2 and "--limit cannot be used with --follow" in result.stderr
    result = tashooks("dlq", "list", "--limit", "0", env=env)
    assert result.returncode == 2 and "--limit must be at least 1" in result.stderr


def test_unreachable_redis_never_shows_its_password() -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    for args in (("events",), ("status",), ("status", "--json")):
        result = tashooks(*args, env={"TASHOOKS_REDIS_URL": url})
        assert result.returncode == 1, args
        assert "hunter2secret" not in result.stdout + result.stderr, args
    # status --json still prints one JSON object a script can read; only the credentials are
    # hidden, not which Redis (host, port, database).
    port = url.split(":")[-1].split("/")[0]
    assert json.loads(result.stdout)["redis"] == {
        "ok": False,
        "url": f"redis://***@127.0.0.1:{port}/0",
        "error": json.loads(result.stdout)["redis"]["error"],
    }


def test_a_mistyped_redis_url_never_shows_its_password() -> None:
    url = "htp://:hunter2secret@127.0.0.1:6391/0"
    for args in (("events",), ("status",), ("receiver",)):
        result = tashooks(*args, env={"TASHOOKS_REDIS_URL": url, "TASHOOKS_WEBHOOK_SECRET": "s"})
        assert result.returncode != 0, args
        assert "hunter2secret" not in result.stdout + result.stderr, args
        assert "'htp://***@127.0.0.1:6391/0' is not a Redis URL" in result.stderr, args


def test_a_worker_that_loses_redis_never_shows_its_password(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: []\n")
    env = {
        "TASHOOKS_REDIS_URL": f"redis://:hunter2secret@127.0.0.1:{free_port()}/3",
        "TASHOOKS_RULES": str(rules),
        "TASHOOKS_REDIS_RETRY": "1s",
        "TASHOOKS_METRICS_PORT": "0",
    }
    result = tashooks("worker", env=env)
    assert result.returncode == 1
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "Redis at redis://***@127.0.0.1:" in result.stderr
    assert "/3 is unreachable" in result.stderr


def test_a_refused_command_is_not_called_an_outage(redis_url: str) -> None:
    """A key of the namespace holding something else (another application's data) makes
    Redis refuse the command: that is said as such, not as Redis being unreachable."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set(KEYS.deadletter_index, b"not a sorted set")
    client.close()
    result = tashooks("dlq", "list", env=env_for(redis_url))
    assert result.returncode == 1
    assert "refused a command" in result.stderr and "WRONGTYPE" in result.stderr
    assert "TASHOOKS_NAMESPACE" in result.stderr and "unreachable" not in result.stderr
