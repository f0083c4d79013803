"""Memory and retention benchmark: the receiver's RSS after a million deliveries, and what
Redis keeps of them.

    .venv/bin/python bench/memory.py [--deliveries 1000000] [--window 60] [--json]

Starts its own Redis (AOF) and one receiver, with ``DEDUP_WINDOW`` (the retention of
deliveries, jobs, audit records and dedup marks) set to ``--window`` seconds so that a run
of a few minutes crosses it several times. No worker runs: on two cores it would fall
behind the receiver, and its backlog would outlive the short window. (Jobs no worker
took expire with their delivery; their ids stay in the queue until a worker drops them.) wrk posts
signed, distinct deliveries in rounds of ``--round`` seconds (each round's bodies are
signed just before it, so their timestamps stay inside the window) until ``--deliveries``
were accepted; a progress line per round shows the receiver's RSS, Redis's memory, the audit
stream's length and the number of keys. At the end: the receiver's RSS (target ≤ 150 MB),
the oldest audit record's age (≤ the window, plus the slack of Redis's approximate
trimming), and a scan of every key: each one either expires within its retention or is one
of the few fixed keys (queue, audit stream, indexes).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from common import (
    NAMESPACE,
    OVERRIDES,
    Stack,
    bench_parser,
    log,
    machine,
    parse_bench_args,
    require,
    run_main,
    start_receiver,
    verdict,
)
from loadgen import write_bodies, write_lua, wrk_run

RSS_TARGET_MB = 150.0
# Approximate trimming (MINID ~) drops whole stream nodes: a node's worth of older entries
# (100 by default) may outlive the window by the time one node takes to fill.
TRIM_SLACK_S = 30.0
# Keys that are not per delivery and live as long as the installation (see receiver/keys.py).
FIXED_KEYS = {"queue", "audit", "workers", "rules", "deadletters", "worker"}


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def audit_oldest_age_s(r: redis.Redis) -> float:
    first = r.xrange(f"{NAMESPACE}:audit", count=1)
    if not first:
        return 0.0
    ms = int(first[0][0].decode().split("-")[0])
    return time.time() - ms / 1000


def key_kind(key: bytes) -> str:
    """``bench:event:evt_...`` -> ``event``; arq's own keys (``arq:job:...``) by prefix."""
    parts = key.decode(errors="replace").split(":")
    if parts[0] == NAMESPACE and len(parts) > 1:
        return parts[1]
    return ":".join(parts[:2])


def scan_keys(r: redis.Redis) -> dict[str, Any]:
    """Every key's kind and TTL: how many have no expiry, and the longest TTL per kind."""
    kinds: Counter[str] = Counter()
    no_ttl: Counter[str] = Counter()
    longest: dict[str, float] = {}
    batch: list[bytes] = []

    def flush() -> None:
        pipe = r.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
        for key, ttl in zip(batch, pipe.execute(), strict=True):
            kind = key_kind(key)
            kinds[kind] += 1
            if ttl == -1:
                no_ttl[kind] += 1
            elif ttl > 0:
                longest[kind] = max(longest.get(kind, 0.0), ttl / 1000)
        batch.clear()

    for key in r.scan_iter(count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    return {"kinds": dict(kinds), "no_ttl": dict(no_ttl), "longest_ttl_s": longest}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="to accept (1000000)")
    parser.add_argument("--window", type=float, default=60.0, help="DEDUP_WINDOW, s (60)")
    parser.add_argument("--round", type=float, default=20.0, help="seconds per wrk run (20)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    args = parse_bench_args(parser, argv)
    require("redis-server", "wrk")
    out: dict[str, Any] = {
        "machine": machine(),
        "appendfsync": args.fsync,
        "window_s": args.window,
        "rounds": [],
    }
    window = f"{args.window:g}s"
    with Stack() as stack:
        server = stack.redis(args.fsync)
        r = redis.Redis(port=server.port)
        OVERRIDES.setdefault("TASHOOKS_DEDUP_WINDOW", window)
        receiver, port = start_receiver(stack, "receiver", server.url)
        url = f"http://127.0.0.1:{port}/webhooks"
        accepted = 0
        started = time.monotonic()
        round_no = 0
        while accepted < args.deliveries:
            round_no += 1
            # Enough fresh bodies for a round at up to 12,000/s (never resent: checked below).
            count = min(int(args.round * 12_000), args.deliveries - accepted + 50_000)
            bodies = write_bodies(stack, count)
            script = write_lua(stack, bodies, "/webhooks", "memory")
            seconds = min(args.round, max(1.0, (args.deliveries - accepted) / 2000))
            result = wrk_run(
                script, url, seconds, args.connections, pids=[receiver.pid, server.proc.pid]
            )
            if result.non2xx or result.socket_errors or result.wraps:
                raise SystemExit(
                    f"bench: round {round_no}: {result.non2xx} non-2xx, "
                    f"{result.socket_errors} socket errors, {result.wraps} bodies resent"
                )
            accepted += result.requests
            rss, hwm = rss_mb(receiver.pid)
            info = r.info("memory")
            sample = {
                "round": round_no,
                "accepted": accepted,
                "elapsed_s": round(time.monotonic() - started, 1),
                "rate": round(result.rps),
                "receiver_rss_mb": round(rss, 1),
                "redis_used_mb": round(info["used_memory"] / 2**20, 1),
                "audit_len": r.xlen(f"{NAMESPACE}:audit"),
                "keys": r.dbsize(),
                "queued": r.zcard(f"{NAMESPACE}:queue"),
                "audit_oldest_s": round(audit_oldest_age_s(r), 1),
            }
            out["rounds"].append(sample)
            log(
                f"round {round_no}: {accepted:,} accepted ({result.rps:.0f}/s); receiver RSS "
                f"{rss:.1f} MiB; Redis {sample['redis_used_mb']} MiB, {sample['keys']:,} keys, "
                f"audit {sample['audit_len']:,} records (oldest {sample['audit_oldest_s']}s), "
                f"{sample['queued']:,} queued"
            )
        rss, hwm = rss_mb(receiver.pid)
        oldest = audit_oldest_age_s(r)
        log("scanning every key for its expiry")
        keys = scan_keys(r)
        stack.stop(receiver)
        r.close()
    out.update(
        {
            "deliveries": accepted,
            "receiver_rss_mb": round(rss, 1),
            "receiver_peak_rss_mb": round(hwm, 1),
            "audit_oldest_s": round(oldest, 1),
            "keys": keys,
        }
    )
    per_delivery_no_ttl = {k: n for k, n in keys["no_ttl"].items() if k not in FIXED_KEYS}
    retention = args.window + 300 + 5  # dedup marks: the window plus the 5 min of future skew
    too_long = {k: t for k, t in keys["longest_ttl_s"].items() if t > retention}
    checks = [
        verdict(
            f"receiver RSS <= {RSS_TARGET_MB:.0f} MB after {accepted:,} deliveries",
            hwm * 1.048576 <= RSS_TARGET_MB,
            f"{hwm * 1.048576:.1f} MB peak ({rss:.1f} MiB now), "
            f"margin {RSS_TARGET_MB - hwm * 1.048576:+.1f} MB",
        ),
        verdict(
            "audit stream within its retention",
            oldest <= args.window + TRIM_SLACK_S,
            f"oldest record {oldest:.0f}s old, window {args.window:g}s "
            f"(+{TRIM_SLACK_S:g}s for approximate trimming)",
        ),
        verdict(
            "every per-delivery key expires within its retention",
            not per_delivery_no_ttl and not too_long,
            f"kinds {keys['kinds']}; without expiry: {keys['no_ttl'] or 'none'}; "
            f"longest TTL {max(keys['longest_ttl_s'].values(), default=0):.0f}s "
            f"(limit {retention:.0f}s)",
        ),
    ]
    out["checks"] = checks
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        m = out["machine"]
        print(f"\nmachine: {m['nproc']} cores, {m['cpu']}; redis appendfsync {args.fsync}")
        print("\n".join(checks))
    return 0 if all(c.startswith("PASS") for c in checks) else 1


if __name__ == "__main__":
    run_main(main)
