"""The ``tashooks`` command run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tashooks.redisproc import free_port

ROOT = Path(__file__).resolve().parents[2]


def tashooks(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tashooks.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_runs_to_the_end(redis_url: str, tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"  # a user's own rules: the demo runs the example ones
    mine.write_text("version: 1\nrules: []\n")
    env = {
        "TASHOOKS_REDIS_URL": redis_url,
        "TASHOOKS_DATA_DIR": str(tmp_path / "data"),
        "TASHOOKS_RULES": str(mine),
    }
    result = tashooks("demo", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "rules from rules.yaml" in out
    [kubeconfig] = (tmp_path / "data" / "kubeconfigs").glob("k8s_*.yaml")
    assert f"save-kubeconfig  wrote {kubeconfig}" in out
    assert "Cluster demo-cluster is ready; kubeconfig saved as" in out
    assert ":warning: web-1 is stopped" in out
    assert "demo finished" in out
    # It cleaned up after itself in the Redis it was given.
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert [k for k in client.scan_iter("tashooks-demo-*")] == []
        assert [k for k in client.scan_iter("arq:*")] == []
    finally:
        client.close()


def test_demo_starts_its_own_redis_when_none_answers(tmp_path: Path) -> None:
    result = tashooks(
        "demo",
        env={
            "TASHOOKS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "TASHOOKS_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting a throwaway redis-server" in result.stdout


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # a thread may end between the listing and the read
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (FileNotFoundError, IndexError):
            return True
        if state == "Z":  # exited, waiting for its reaper
            return True
        time.sleep(0.05)
    return False


def _start_demo(env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """A demo with its own redis-server, stopped once that server is up; its server's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tashooks.cli", "demo"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "starting a throwaway redis-server" in line:
            break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # between fork and exec the child is still python
        servers = [c for c in _children(proc.pid) if "redis-server" in _cmdline(c)]
        if servers:
            return proc, servers[0]
        time.sleep(0.02)
    raise AssertionError("the demo started no redis-server")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_demo_leaves_no_redis_server_behind(tmp_path: Path, how: signal.Signals) -> None:
    env = {"TASHOOKS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc, server = _start_demo({**env, "TASHOOKS_DATA_DIR": str(tmp_path)})
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=30)
    if how == signal.SIGTERM:  # cleaned up and said so; no traceback
        assert proc.returncode == 143, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
    assert _gone(server), "the demo's redis-server outlived it"


def test_a_terminated_demo_deletes_its_keys(redis_url: str, tmp_path: Path) -> None:
    import redis

    proc = subprocess.Popen(
        [sys.executable, "-m", "tashooks.cli", "demo"],
        cwd=ROOT,
        env={**os.environ, "TASHOOKS_REDIS_URL": redis_url, "TASHOOKS_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    client = redis.Redis.from_url(redis_url)
    try:
        for _line in proc.stdout:  # its namespace has keys once the simulator runs
            if [k for k in client.scan_iter("tashooks-demo-*")]:
                break
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode in (0, 143), stderr  # 0: it had just finished
        assert [k for k in client.scan_iter("tashooks-demo-*")] == []
        assert [k for k in client.scan_iter("arq:*")] == []  # jobs it left queued
    finally:
        client.close()


async def test_the_demo_cleanup_takes_arqs_keys_of_its_queued_jobs(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from receiver.keys import Keys
    from tashooks.demo import _clean_namespace

    client = aioredis.Redis.from_url(redis_url)
    try:
        ours, other = Keys("tashooks-demo-1"), Keys("prod")
        await client.zadd(ours.queue, {"evt_A": 1, "evt_A:rule:deferred:1": 2})
        await client.zadd(other.queue, {"evt_B": 1})
        for job_id in ("evt_A", "evt_A:rule:deferred:1", "evt_B"):
            await client.set(f"arq:job:{job_id}", b"{}")
            await client.set(f"arq:retry:{job_id}", b"1")
        await client.set("arq:in-progress:evt_A", b"1")
        await client.set(ours.event("evt_A"), b"x")

        await _clean_namespace(redis_url, "tashooks-demo-1")
        left = sorted([k.decode() async for k in client.scan_iter("*")])
        assert left == ["arq:job:evt_B", "arq:retry:evt_B", other.queue]
    finally:
        await client.aclose()


def test_check_accepts_the_example_rules() -> None:
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "AUDIT_SINK_URL": "https://audit.example/in",
        "DEFAULT_NETWORK_ID": "net_1",
    }
    result = tashooks("check", "rules.yaml", env=env)
    assert result.returncode == 0, result.stderr
    assert "OK, 4 rules, 2 targets" in result.stdout


def test_check_refuses_a_bad_file_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    on: a.b\n    steps:\n      - nope: {}\n")
    result = tashooks("check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:6: " in result.stderr
    assert "not loaded" in result.stderr


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHOOKS_")}
    result = subprocess.run(
        [sys.executable, "-m", "tashooks.cli", "receiver"],
        cwd=tmp_path,
        env={**env, "TASHOOKS_WEBHOOK_SECRET": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "TASHOOKS_WEBHOOK_SECRET" in result.stderr


def test_serve_send_and_sigterm(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: keep\n    on: demo.*\n    steps:\n"
        "      - file: {path: 'got-{{ event.data.n }}.txt', content: '{{ event.event }}'}\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "TASHOOKS_REDIS_URL": redis_url,
        "TASHOOKS_WEBHOOK_SECRET": "s3",
        "TASHOOKS_PORT": str(port),
        "TASHOOKS_RULES": str(rules),
        "TASHOOKS_DATA_DIR": str(tmp_path / "data"),
        "TASHOOKS_NAMESPACE": "clitest",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tashooks.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        sent = subprocess.run(
            [sys.executable, "-m", "tashooks.cli", "send", "demo.ping", "--data", "n=7"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("202 ")
        target = tmp_path / "data" / "got-7.txt"
        while not target.exists():
            assert time.monotonic() < deadline + 10, "the rule did not run"
            time.sleep(0.05)
        assert target.read_text() == "demo.ping"
        wrong = subprocess.run(
            [sys.executable, "-m", "tashooks.cli", "send", "demo.ping", "--secret", "nope"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert wrong.returncode == 1 and wrong.stdout.startswith("401 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("serve did not stop on SIGTERM")
    assert proc.returncode == 0, stderr
    assert "stopping: no new deliveries or jobs" in stderr and "stopped" in stderr


async def test_register_creates_the_webhook_and_prints_the_secret_once() -> None:
    import asyncio

    from tashooks.simulator import SimulatorConfig, start_simulator

    sim = await start_simulator(
        SimulatorConfig(api_key="reg-key", ready_delay=0.05), "127.0.0.1", 0
    )
    try:
        env = {"TASHOOKS_API_URL": sim.url, "TASHOOKS_API_KEY": "reg-key"}
        result = await asyncio.to_thread(
            tashooks,
            "register",
            "--url",
            "http://127.0.0.1:9/webhooks",
            "--events",
            "kubernetes.ready,vps.create",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        # A type the platform does not list: said, and registered as given.
        assert "warning: 'vps.create' is not one of the platform's event types" in result.stderr
        assert "vps.created" in result.stderr  # the likely one
        secret = result.stdout.strip().splitlines()[-1]
        [hook] = sim.state.webhooks.values()
        assert hook.url == "http://127.0.0.1:9/webhooks"
        assert sorted(hook.events) == ["kubernetes.ready", "vps.create"]
        assert hook.secret == secret and len(secret) >= 32
        bad = await asyncio.to_thread(
            tashooks,
            "register",
            "--url",
            "http://x/webhooks",
            env={**env, "TASHOOKS_API_KEY": "wrong"},
        )
        assert bad.returncode == 1 and "401" in bad.stderr and secret not in bad.stderr
    finally:
        await sim.close()


def test_register_with_an_empty_api_key_says_so() -> None:
    result = tashooks(
        "register", "--url", "https://hooks.example/webhooks", env={"TASHOOKS_API_KEY": ""}
    )
    assert result.returncode == 2
    assert "TASHOOKS_API_KEY" in result.stderr and "empty" in result.stderr


def _daemon_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: []\n")
    return {
        "TASHOOKS_REDIS_URL": redis_url,
        "TASHOOKS_WEBHOOK_SECRET": "s",
        "TASHOOKS_RULES": str(rules),
        "TASHOOKS_NAMESPACE": "clitest-listen",
        "TASHOOKS_METRICS_PORT": "0",
        **extra,
    }


@pytest.mark.parametrize("command", ["serve", "receiver"])
def test_a_busy_port_is_named_not_blamed_on_redis(
    redis_url: str, tmp_path: Path, command: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _daemon_env(redis_url, tmp_path, TASHOOKS_PORT=str(port))
        result = tashooks(command, env=env, timeout=30)
        assert result.returncode == 2, result.stderr
        assert "Redis" not in result.stderr
        assert result.stderr.strip().endswith(
            f"tashooks: TASHOOKS_PORT: port {port} on 127.0.0.1 is in use by another process; "
            "stop it or set TASHOOKS_PORT"
        )
        result = tashooks(command, "--port", str(port), env=env, timeout=30)
        assert result.returncode == 2
        assert f"--port: port {port} on 127.0.0.1 is in use" in result.stderr


@pytest.mark.parametrize("command", ["serve", "receiver"])
def test_a_host_that_does_not_resolve_is_named(
    redis_url: str, tmp_path: Path, command: str
) -> None:
    env = _daemon_env(redis_url, tmp_path, TASHOOKS_HOST="no.such.host.invalid")
    result = tashooks(command, env=env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Redis" not in result.stderr
    assert "tashooks: TASHOOKS_HOST: cannot resolve 'no.such.host.invalid'" in result.stderr
    assert "set TASHOOKS_HOST to an address of this machine" in result.stderr


def test_a_busy_metrics_port_is_named_in_the_workers_warning(
    redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _daemon_env(
            redis_url, tmp_path, TASHOOKS_METRICS_PORT=str(port), TASHOOKS_LOG_FORMAT="text"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "tashooks.cli", "worker"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        timer = threading.Timer(30, proc.kill)  # no such line: the loop below ends anyway
        timer.start()
        line = ""
        try:
            for line in proc.stdout:
                if "metrics" in line:
                    break
        finally:
            timer.cancel()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert "worker metrics not served: TASHOOKS_METRICS_PORT: port" in line
    assert f"port {port} on 127.0.0.1 is in use by another process" in line


def test_simulate_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = tashooks("simulate", "--port", str(port), timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"tashooks simulate: --port: port {port} on 127.0.0.1 is in use by another process; "
        "stop it or set --port"
    ]


def test_daemon_commands_offer_only_the_options_they_use() -> None:
    # A worker serves nothing on PORT; the receiver runs no rules and no jobs.
    for args in (("worker", "--port", "19200"), ("receiver", "--grace", "10s")):
        result = tashooks(*args, env={"TASHOOKS_WEBHOOK_SECRET": "s"}, timeout=30)
        assert result.returncode == 2, args
        assert f"unrecognized arguments: {' '.join(args[1:])}" in result.stderr
    assert "--grace" not in tashooks("receiver", "--help").stdout
    assert "--port" not in tashooks("worker", "--help").stdout
    assert "METRICS_PORT" in tashooks("worker", "--help").stdout


def test_a_bad_option_value_names_the_option_typed() -> None:
    for args, said in (
        (("serve", "--grace", "abc"), "argument --grace: 'abc' is not a duration"),
        (("worker", "--grace", "abc"), "argument --grace: 'abc' is not a duration"),
        (("receiver", "--port", "70000"), "argument --port: '70000' is not a port number"),
        (("simulate", "--port", "x"), "argument --port: 'x' is not a port number"),
    ):
        result = tashooks(*args, env={"TASHOOKS_WEBHOOK_SECRET": "s"}, timeout=30)
        assert result.returncode == 2, args
        assert said in result.stderr, args
        assert "TASHOOKS_" not in result.stderr, args


def test_send_with_a_malformed_data_option_is_a_usage_mistake() -> None:
    for bad in ("noequals", "=value"):
        result = tashooks("send", "vps.created", "--data", bad, "--secret", "s", timeout=30)
        assert result.returncode == 2, bad
        assert result.stderr == (
            f"tashooks send: --data takes NAME=VALUE, e.g. --data name=web-1; got {bad!r}\n"
        )


def test_a_bad_setting_exits_2_in_every_command() -> None:
    env = {"TASHOOKS_LOG_LEVEL": "bogus", "TASHOOKS_WEBHOOK_SECRET": "s"}
    for args in (("serve",), ("receiver",), ("worker",), ("send", "a.b"), ("events",)):
        result = tashooks(*args, env=env, timeout=30)
        assert result.returncode == 2, args
        assert "TASHOOKS_LOG_LEVEL: 'bogus' is not one of" in result.stderr, args


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_worker_without_redis_says_so_and_exits_after_redis_retry(
    tmp_path: Path, command: str
) -> None:
    """It waits REDIS_RETRY for Redis (saying so, and what to check), not a multiple of
    it in silence; then exits non-zero for its supervisor (``serve`` never listens)."""
    env = _daemon_env(f"redis://127.0.0.1:{free_port()}/0", tmp_path, TASHOOKS_REDIS_RETRY="3s")
    env["TASHOOKS_PORT"] = str(free_port())
    started = time.monotonic()
    result = tashooks(command, env=env, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert 3 <= took < 15, took
    assert "the worker waits for it" in result.stderr and "TASHOOKS_REDIS_RETRY" in result.stderr
    assert "is unreachable" in result.stderr and "Traceback" not in result.stderr
