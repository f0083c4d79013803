"""Shared parts of the benchmarks: processes that are always stopped, free ports, Redis,
pre-signed bodies and the wrk Lua script that cycles through them, wrk's results.

Everything binds to 127.0.0.1 only. Every process started here is stopped when the
``Stack`` closes (also on Ctrl-C, SIGTERM or an error), and dies with the benchmark if
the benchmark itself is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from receiver.signatures import sign
from tashooks.redisproc import RedisProcess, free_port

__all__ = ["RedisProcess", "free_port"]

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


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(
            f"bench: not on PATH: {', '.join(missing)} (apt-get install wrk webhook redis-server)"
        )


class Stack:
    """Processes and a temporary directory that all go away on ``close()``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tashooks-bench-"))
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._redis: list[RedisProcess] = []
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

    def redis(self, appendfsync: str) -> RedisProcess:
        """A throwaway redis-server with AOF (``appendfsync`` always or everysec)."""
        directory = self.dir / f"redis{len(self._redis)}"
        directory.mkdir()
        server = RedisProcess(directory=directory, appendfsync=appendfsync)
        server.start()
        self._redis.append(server)
        return server

    def close(self) -> None:
        for _, proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=10)
        for server in self._redis:
            with contextlib.suppress(Exception):
                server.close()
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


# -- bodies and wrk ------------------------------------------------------------------------


def make_bodies(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct signed events (signature, body), timestamped now."""
    run = secrets.token_hex(3)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for i in range(start, start + count):
        doc = {
            "event": "vps.status_changed",
            "timestamp": stamp,
            "data": {"id": f"vps_{run}_{i:07d}", "name": f"web-{i}", "status": "running"},
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        out.append((sign(body, SECRET), body))
    return out


def write_bodies(stack: Stack, count: int) -> Path:
    path = stack.dir / "bodies.tsv"
    with path.open("wb") as f:
        for sig, body in make_bodies(count):
            f.write(sig.encode() + b"\t" + body + b"\n")
    return path


# Pre-formats every request at init (so request() costs the load generator nothing) and
# starts at the index given after "--"; done() prints one JSON line for wrk_run().
_LUA = r"""
local reqs = {}
local count = 0
idx = 0
wraps = 0
function init(args)
  for line in io.lines("@BODIES@") do
    local tab = line:find("\t", 1, true)
    count = count + 1
    reqs[count] = wrk.format("POST", "@PATH@", {
      ["Content-Type"] = "application/json",
      ["X-Signature"] = line:sub(1, tab - 1),
    }, line:sub(tab + 1))
  end
  idx = tonumber(args[1] or "0")
end
function request()
  idx = idx + 1
  if idx > count then idx = 1; wraps = wraps + 1 end
  return reqs[idx]
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local t = threads[1]
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"next_index":%d,"wraps":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    t:get("idx"), t:get("wraps")))
end
"""


def write_lua(stack: Stack, bodies: Path, path: str, name: str) -> Path:
    script = stack.dir / f"{name}.lua"
    script.write_text(_LUA.replace("@BODIES@", str(bodies)).replace("@PATH@", path))
    return script


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    next_index: int
    wraps: int
    cpu: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        errors = f", {self.socket_errors} socket errors" if self.socket_errors else ""
        other = self.cpu.get("other_pct", 0.0)
        noise = f"; other load {other:.0f}% of a core" if other >= 10 else ""
        return (
            f"{self.rps:8.0f} events/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
            f"({self.requests} requests, {self.non2xx} non-2xx{errors}{noise})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rps": round(self.rps, 1)}


def wrk_run(
    script: Path,
    url: str,
    duration: float,
    connections: int,
    start: int = 0,
    pids: Sequence[int] = (),
) -> WrkResult:
    """One ``wrk -t1 -c<connections> -d<duration>s --latency`` run, bounded in time.

    ``pids`` (the servers under test, Redis) are what the CPU report counts as ours.
    """
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s"]
    args += ["-s", str(script), url, "--", str(start)]
    meter = CpuMeter(pids)
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=False)
    cpu = meter.stop()
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            d = json.loads(line[6:])
            return WrkResult(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                non2xx=d["non2xx"],
                socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
                p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                max_ms=d["max_us"] / 1000,
                next_index=d["next_index"],
                wraps=d["wraps"],
                cpu=cpu,
            )
    raise SystemExit(f"bench: wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


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
    return ticks / _HZ


_HZ = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent running programs (all cores) since boot: user,
    nice, system and steal; interrupt time (loopback networking) is left out, as it is
    not in any process's own times either."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (v[0] + v[1] + v[2] + v[7]) / _HZ


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU use over an interval, in % of one core: the whole machine, ours (``pids`` with
    their children, and the commands this process waited for, such as wrk), and the rest
    (other programs on the machine: noise)."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.t0 = time.monotonic()
        self.busy0 = _busy_seconds()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        return _children_seconds() + sum(cpu_seconds(p, children=True) for p in self.pids)

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-6)
        busy = (_busy_seconds() - self.busy0) / wall * 100
        ours = (self._ours() - self.ours0) / wall * 100
        return {
            "machine_pct": round(busy, 1),
            "ours_pct": round(ours, 1),
            "other_pct": round(max(0.0, busy - ours), 1),
        }


def settle(threshold_pct: float = 15.0, timeout: float = 30.0) -> float:
    """Wait (at most ``timeout``) until the machine is about idle; returns its load in % of
    one core over the last half second. Keeps one run's leftovers (and other programs'
    bursts) out of the next run."""
    deadline = time.monotonic() + timeout
    while True:
        t0, b0 = time.monotonic(), _busy_seconds()
        time.sleep(0.5)
        load = (_busy_seconds() - b0) / (time.monotonic() - t0) * 100
        if load < threshold_pct or time.monotonic() >= deadline:
            return load


def audit_records(r: redis.Redis, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(stream time in ms, fields) of every audit record of ``kind``."""
    start = "-"
    key = f"{NAMESPACE}:audit"
    while True:
        batch = r.xrange(key, min=start, count=10_000)
        if not batch:
            return
        for sid, raw in batch:
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            if fields.get("kind") == kind:
                yield int(sid.split(b"-")[0]), fields
        start = "(" + batch[-1][0].decode()


def wait_drained(r: redis.Redis, timeout: float, label: str) -> float:
    """Wait until ``<ns>:queue`` is empty; returns the seconds waited."""
    t0 = time.monotonic()
    last = -1
    next_log = t0 + 5
    while time.monotonic() - t0 < timeout:
        left = int(r.zcard(f"{NAMESPACE}:queue"))
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
