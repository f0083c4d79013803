"""Load for the benchmarks: distinct signed events, wrk driving them, and the machine's CPU
use meanwhile (ours, and that of other programs: noise).

The wrk Lua script reads the pre-signed bodies from a file, pre-formats every request at
start (so ``request()`` costs the load generator next to nothing), starts at the index
given after ``--`` (so successive runs never resend a body) and prints its figures as one
JSON line from ``done()``.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import SECRET, Stack, cpu_seconds

from receiver.signatures import sign


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
    seconds = max(1, round(duration))  # wrk takes whole seconds
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    args += ["-s", str(script), url, "--", str(start)]
    meter = CpuMeter(pids)
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
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
