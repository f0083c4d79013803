"""Shared parts of the benchmarks: processes that are always stopped, free ports, Redis,
TASHOOKS_* settings, /proc figures, the audit stream, PASS/MISS lines.

Everything binds to 127.0.0.1 only. Every process started here is stopped when the
``Stack`` closes (also on Ctrl-C, SIGTERM or an error), and dies with the benchmark if
the benchmark itself is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import redis

from tashooks.redisproc import free_port

__all__ = ["free_port"]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-secret-" + secrets.token_hex(8)
NAMESPACE = "bench"
_PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    """A progress line (stderr, so that ``--json`` output stays clean)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code; 130 after Ctrl-C or SIGTERM (all stopped by then)."""
    try:
        code = main()
    except KeyboardInterrupt:
        log("interrupted: everything this benchmark started has been stopped")
        code = 130
    sys.exit(code)


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(
            f"bench: not on PATH: {', '.join(missing)} (apt-get install wrk webhook redis-server)"
        )


@dataclass
class Redis:
    """A redis-server of a ``Stack``."""

    port: int
    proc: subprocess.Popen[bytes]
    stack: Stack

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.stack.stop(self.proc)


class Stack:
    """Processes and a temporary directory that all go away on ``close()``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tashooks-bench-"))
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._redis: list[Redis] = []
        signal.signal(signal.SIGTERM, _sigterm)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self, name: str, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` (output to ``<tmp>/<name>.log``), in its own session."""
        with (self.dir / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def redis(self, appendfsync: str) -> Redis:
        """A throwaway redis-server with AOF (``appendfsync`` always or everysec)."""
        exe = shutil.which("redis-server") or "redis-server"
        directory = self.dir / f"redis{len(self._redis)}"
        directory.mkdir()
        port = free_port()
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", appendfsync]
        name = f"redis{len(self._redis)}"
        proc = self.start(name, args)
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: redis-server did not start:\n{self.tail(name)}")
            time.sleep(0.02)
        server = Redis(port, proc, self)
        self._redis.append(server)
        return server

    def close(self) -> None:
        for _, proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_port(
        self, name: str, proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0
    ) -> None:
        """Wait until something accepts connections on ``port``, or fail with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with {proc.returncode}:\n{self.tail(name)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise SystemExit(
            f"bench: {name} did not listen on {port} in {timeout}s:\n{self.tail(name)}"
        )


# Settings given with --set NAME=VALUE (TASHOOKS_NAME for every receiver and worker).
OVERRIDES: dict[str, str] = {}


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --fsync, --json, --set."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    _add_set_option(parser)
    return parser


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply its --set settings."""
    args = parser.parse_args(argv)
    apply_sets(args.set)
    return args


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the receivers and workers, e.g. --set max_jobs=200 (TASHOOKS_NAME)",
    )


def apply_sets(pairs: Sequence[str]) -> None:
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"bench: --set takes NAME=VALUE, got {pair!r}")
        OVERRIDES[f"TASHOOKS_{name.upper()}"] = value
        log(f"setting TASHOOKS_{name.upper()}={value}")


def tashooks_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The TASHOOKS_* settings of a benchmark's receiver or worker."""
    env = {
        "TASHOOKS_REDIS_URL": redis_url,
        "TASHOOKS_WEBHOOK_SECRET": SECRET,
        "TASHOOKS_NAMESPACE": NAMESPACE,
        "TASHOOKS_HOST": "127.0.0.1",
        "TASHOOKS_LOG_LEVEL": "WARNING",
    }
    env.update({f"TASHOOKS_{k.upper()}": v for k, v in extra.items()})
    env.update(OVERRIDES)
    return env


def start_receiver(stack: Stack, name: str, redis_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = stack.start(
        name, [PYTHON, "-m", "tashooks.cli", "receiver"], tashooks_env(redis_url, port=str(port))
    )
    stack.wait_port(name, proc, port)
    return proc, port


def start_worker(stack: Stack, name: str, redis_url: str, rules: Path) -> subprocess.Popen[bytes]:
    env = tashooks_env(redis_url, rules=str(rules), data_dir=str(stack.dir / "data"))
    return stack.start(name, [PYTHON, "-m", "tashooks.cli", "worker"], env)


LOG_RULES = """version: 1
rules:
  - name: bench-log
    on: "*"
    steps:
      - log: {message: "event {{ event.data.id }}"}
"""


def write_rules(stack: Stack) -> Path:
    """A rules file with one rule of one ``log`` step, for every event."""
    path = stack.dir / "rules.yaml"
    path.write_text(LOG_RULES)
    return path


# -- /proc and Redis -------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of ``pid`` so far (plus its reaped children's), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def audit_records(r: redis.Redis, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(stream time in ms, fields) of every audit record of ``kind``."""
    start = "-"
    key = f"{NAMESPACE}:audit"
    while True:
        batch: Any = r.xrange(key, min=start, count=10_000)
        if not batch:
            return
        for sid, raw in batch:
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            if fields.get("kind") == kind:
                yield int(sid.split(b"-")[0]), fields
        start = "(" + batch[-1][0].decode()


def queued(r: redis.Redis) -> int:
    """Jobs in the queue (waiting or running)."""
    return int(cast(int, r.zcard(f"{NAMESPACE}:queue")))


def wait_drained(r: redis.Redis, timeout: float, label: str) -> float:
    """Wait until ``<ns>:queue`` is empty; returns the seconds waited."""
    t0 = time.monotonic()
    last = -1
    next_log = t0 + 5
    while time.monotonic() - t0 < timeout:
        left = queued(r)
        if left == 0:
            return time.monotonic() - t0
        if time.monotonic() >= next_log:
            log(f"{label}: {left} jobs left")
            next_log += 5
        last = left
        time.sleep(0.02)
    raise SystemExit(f"bench: {label}: queue not drained in {timeout:g}s ({last} left)")


def verdict(name: str, ok: bool, detail: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {name}: {detail}"


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": model}
