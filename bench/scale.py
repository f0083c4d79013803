"""Scale benchmark: 2 receivers + 2 workers on one Redis against 1 + 1.

    .venv/bin/python bench/scale.py [--duration 5] [--connections 64] [--json]

For each layout, on a fresh Redis: the receivers (each on its own port) take the same
total load from wrk (one ``wrk -t1`` per receiver, the connections split between them)
for ``--duration`` s after a short warm-up; then the workers start and drain everything
that was accepted. Reported: ingest events/s and drain events/s (first run record to last)
of each layout, their factor 2+2 over 1+1, and the check that every accepted event has
exactly one run record (none lost, none run twice).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from common import (
    Stack,
    audit_records,
    bench_parser,
    cpu_seconds,
    log,
    machine,
    parse_bench_args,
    require,
    run_main,
    start_receiver,
    start_worker,
    verdict,
    wait_drained,
    write_rules,
)
from loadgen import WrkResult, settle, write_bodies, write_lua, wrk_run

FACTOR_TARGET = 1.6


def layout(
    stack: Stack, n: int, args: argparse.Namespace, lua: Path, count: int, rules: Path
) -> dict[str, Any]:
    """Run ``n`` receivers and ``n`` workers on a fresh Redis; their figures."""
    server = stack.redis(args.fsync)
    r = redis.Redis(port=server.port)
    receivers = [start_receiver(stack, f"receiver{n}.{i}", server.url) for i in range(n)]
    urls = [f"http://127.0.0.1:{port}/webhooks" for _, port in receivers]
    pids = [p.pid for p, _ in receivers] + [server.proc.pid]
    conns = args.connections // n
    cursors = [i * count // n for i in range(n)]  # each wrk its own, disjoint bodies

    def load(seconds: float, label: str) -> list[WrkResult]:
        settle()
        log(f"{n}+{n} {label}: {n} x wrk -t1 -c{conns} -d{seconds:g}s")
        with ThreadPoolExecutor(n) as pool:
            futures = [
                pool.submit(wrk_run, lua, urls[i], seconds, conns, cursors[i], pids)
                for i in range(n)
            ]
            results = [f.result() for f in futures]
        for i, res in enumerate(results):
            cursors[i] = res.next_index
            log(f"  receiver {i}: {res.line()}")
        return results

    load(args.warmup, "warm-up")
    results = load(args.duration, "run")
    ingest = sum(res.rps for res in results)
    refused = sum(res.non2xx + res.socket_errors for res in results)
    accepted = {f["id"] for _, f in audit_records(r, "delivery") if f["status"] == "accepted"}
    log(f"  ingest {ingest:.0f} events/s; {len(accepted)} accepted in all; starting {n} workers")

    settle()
    workers = [start_worker(stack, f"worker{n}.{i}", server.url, rules) for i in range(n)]
    t0 = time.monotonic()
    cpu0 = [cpu_seconds(p) for p in pids[n:]]  # redis
    wait_drained(r, max(300.0, len(accepted) / 50), f"{n}+{n} drain")
    wall = time.monotonic() - t0
    worker_pct = sum(cpu_seconds(w.pid) for w in workers) / wall * 100
    redis_pct = sum(cpu_seconds(p) - c for p, c in zip(pids[n:], cpu0, strict=True)) / wall * 100
    runs = list(audit_records(r, "run"))
    span = (runs[-1][0] - runs[0][0]) / 1000 if len(runs) > 1 else 0.0
    drain = (len(runs) - 1) / span if span else 0.0
    per_id = Counter(f["id"] for _, f in runs)
    lost = len(accepted - per_id.keys())
    twice = sum(1 for c in per_id.values() if c > 1)
    strays = len(per_id.keys() - accepted)
    log(f"  drain {drain:.0f} events/s ({len(runs)} runs in {wall:.1f}s from start-up)")
    log(f"  CPU while draining: workers {worker_pct:.0f}%, redis {redis_pct:.0f}% of a core")
    for proc in workers + [p for p, _ in receivers]:
        stack.stop(proc)
    r.close()
    server.close()
    return {
        "ingest_events_per_s": round(ingest, 1),
        "p99_ms": max(res.p99_ms for res in results),
        "refused": refused,
        "accepted": len(accepted),
        "runs": len(runs),
        "drain_events_per_s": round(drain, 1),
        "lost": lost,
        "duplicates": twice,
        "strays": strays,
        "statuses": dict(Counter(f["status"] for _, f in runs)),
        "other_load_pct": max(res.cpu["other_pct"] for res in results),
        "ingest_machine_pct": max(res.cpu["machine_pct"] for res in results),
        "drain_worker_cpu_pct": round(worker_pct, 1),
        "drain_redis_cpu_pct": round(redis_pct, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="wrk seconds (5)")
    parser.add_argument("--connections", type=int, default=64, help="total connections (64)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    args = parse_bench_args(parser, argv)
    require("wrk", "redis-server")
    count = max(150_000, int(30_000 * (args.duration + args.warmup)))

    with Stack() as stack:
        log(f"signing {count} distinct bodies")
        bodies = write_bodies(stack, count)
        lua = write_lua(stack, bodies, "/webhooks", "webhooks")
        rules = write_rules(stack)
        one = layout(stack, 1, args, lua, count, rules)
        two = layout(stack, 2, args, lua, count, rules)

    ingest_x = two["ingest_events_per_s"] / one["ingest_events_per_s"]
    drain_x = two["drain_events_per_s"] / one["drain_events_per_s"]
    cores = machine()["nproc"] * 100
    # Why a factor falls short here: what the machine had left (all cores, in % of one).
    why_ingest = (
        f"; why: the machine was {one['ingest_machine_pct']:.0f}% busy (1+1) and "
        f"{two['ingest_machine_pct']:.0f}% (2+2) of {cores}%: receivers, Redis and wrk share "
        "the cores, so a second receiver gets what the first left"
        if ingest_x < FACTOR_TARGET
        else ""
    )
    why_drain = (
        f"; why: workers used {one['drain_worker_cpu_pct']:.0f}% (1+1) and "
        f"{two['drain_worker_cpu_pct']:.0f}% (2+2) of a core, Redis "
        f"{one['drain_redis_cpu_pct']:.0f}% and {two['drain_redis_cpu_pct']:.0f}%, of {cores}%"
        if drain_x < FACTOR_TARGET
        else ""
    )
    checks = [
        verdict(
            "2 receivers >= 1.6 x 1 receiver (ingest)",
            ingest_x >= FACTOR_TARGET,
            f"{ingest_x:.2f} x ({two['ingest_events_per_s']:.0f} vs "
            f"{one['ingest_events_per_s']:.0f}/s), margin {ingest_x - FACTOR_TARGET:+.2f}"
            f"{why_ingest}",
        ),
        verdict(
            "2 workers >= 1.6 x 1 worker (drain)",
            drain_x >= FACTOR_TARGET,
            f"{drain_x:.2f} x ({two['drain_events_per_s']:.0f} vs "
            f"{one['drain_events_per_s']:.0f}/s), margin {drain_x - FACTOR_TARGET:+.2f}"
            f"{why_drain}",
        ),
    ]
    for name, res in (("1+1", one), ("2+2", two)):
        ok = res["lost"] == res["duplicates"] == res["strays"] == res["refused"] == 0
        checks.append(
            verdict(
                f"{name}: every accepted event ran exactly once",
                ok and res["runs"] == res["accepted"],
                f"{res['accepted']} accepted, {res['runs']} runs, {res['lost']} lost, "
                f"{res['duplicates']} twice, {res['refused']} not 2xx",
            )
        )
    out = {
        "machine": machine(),
        "appendfsync": args.fsync,
        "layouts": {"1+1": one, "2+2": two},
        "factor_ingest": round(ingest_x, 2),
        "factor_drain": round(drain_x, 2),
        "checks": checks,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        m = out["machine"]
        print(f"\nmachine: {m['nproc']} cores, {m['cpu']}; redis appendfsync {args.fsync}")
        for name, res in (("1+1", one), ("2+2", two)):
            print(
                f"  {name}: ingest {res['ingest_events_per_s']:7.0f} events/s "
                f"(p99 {res['p99_ms']:.1f} ms), drain {res['drain_events_per_s']:6.0f} events/s"
            )
        print("\n".join(checks))
    return 0 if all(c.startswith("PASS") for c in checks) else 1


if __name__ == "__main__":
    run_main(main)
