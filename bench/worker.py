"""Worker benchmark: one ``tashooks worker`` process, a rule with one ``log`` step.

    .venv/bin/python bench/worker.py [--events 20000] [--rate 200] [--seconds 10] [--json]

1. Throughput: ``--events`` events are queued first (through the receiver's Ingestor, into
   a throwaway Redis), then the worker starts; events/s from its first run record to its
   last (and, for reference, from its start until the queue is empty).
2. Latency: the receiver runs too; a paced client posts ``--rate`` events/s for
   ``--seconds`` s; per event, the run's ``started_ms`` minus the delivery's
   ``received_ms`` (both in the event hash ``<ns>:event:<id>``): p50/p99.
3. Idle CPU of the worker over ``--idle`` s with an empty queue (/proc/<pid>/stat).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis
from common import (
    NAMESPACE,
    Stack,
    audit_records,
    bench_parser,
    cpu_seconds,
    log,
    machine,
    parse_bench_args,
    queued,
    require,
    run_main,
    start_receiver,
    start_worker,
    verdict,
    wait_drained,
    write_rules,
)
from loadgen import make_bodies

from receiver.events import parse_event
from receiver.ingest import Ingestor
from receiver.keys import Keys
from receiver.signatures import HEADER

RATE_TARGET = 2000.0
P50_TARGET_MS = 10.0
P99_TARGET_MS = 50.0
IDLE_TARGET_PCT = 2.0
RULE = "bench-log"


async def preload(url: str, bodies: list[tuple[str, bytes]]) -> None:
    """Store ``bodies`` as the receiver would (dedup mark, job, audit record, event hash)."""
    client = aioredis.Redis.from_url(url)
    ingestor = Ingestor(client, Keys(NAMESPACE), 7 * 86400.0)
    sem = asyncio.Semaphore(64)

    async def one(body: bytes) -> None:
        async with sem:
            stored = await ingestor.store(parse_event(body), source="bench")
            assert stored.new, "a pre-loaded event was a duplicate"

    try:
        for i in range(0, len(bodies), 5000):
            await asyncio.gather(*(one(b) for _, b in bodies[i : i + 5000]))
    finally:
        await client.aclose()


async def paced(port: int, bodies: list[tuple[str, bytes]], rate: float) -> list[str]:
    """POST ``bodies`` at ``rate``/s (each on its own schedule); the ids of the 202s."""
    url = f"http://127.0.0.1:{port}/webhooks"
    ids: list[str] = []
    statuses: Counter[int] = Counter()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def send(sig: str, body: bytes) -> None:
            headers = {HEADER: sig, "Content-Type": "application/json"}
            async with session.post(url, data=body, headers=headers) as resp:
                statuses[resp.status] += 1
                if resp.status == 202:
                    ids.append((await resp.json())["id"])

        t0 = time.monotonic()
        tasks = []
        for i, (sig, body) in enumerate(bodies):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(sig, body)))
        await asyncio.gather(*tasks)
    if set(statuses) != {202}:
        raise SystemExit(f"bench: the receiver answered {dict(statuses)}")
    return ids


def run_latencies(r: redis.Redis, ids: list[str], timeout: float) -> list[int]:
    """202 -> run start (ms) of each id, once all runs are recorded."""
    deadline = time.monotonic() + timeout
    while True:
        pipe = r.pipeline(transaction=False)
        for event_id in ids:
            pipe.hmget(f"{NAMESPACE}:event:{event_id}", ["received_ms", f"run:{RULE}"])
        rows = pipe.execute()
        if all(run is not None for _, run in rows):
            return [json.loads(run)["started_ms"] - int(received) for received, run in rows]
        if time.monotonic() > deadline:
            missing = sum(run is None for _, run in rows)
            raise SystemExit(f"bench: {missing} of {len(ids)} runs not recorded in {timeout}s")
        time.sleep(0.1)


def pct(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="queued events (20000)")
    parser.add_argument("--rate", type=float, default=200.0, help="paced events/s (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced phase (10 s)")
    parser.add_argument("--idle", type=float, default=10.0, help="idle CPU window (10 s)")
    args = parse_bench_args(parser, argv)
    require("redis-server")
    n = args.events
    paced_count = int(args.rate * args.seconds)
    bodies = make_bodies(n + paced_count)
    out: dict[str, Any] = {"machine": machine(), "appendfsync": args.fsync, "events": n}

    with Stack() as stack:
        server = stack.redis(args.fsync)
        r = redis.Redis(port=server.port)
        log(f"redis-server on port {server.port} (appendonly yes, appendfsync {args.fsync})")
        t = time.monotonic()
        asyncio.run(preload(server.url, bodies[:n]))
        log(f"queued {queued(r)} events in {time.monotonic() - t:.1f}s")

        log("starting the worker (one rule, one log step)")
        t_start = time.monotonic()
        redis_cpu0 = cpu_seconds(server.proc.pid)
        worker = start_worker(stack, "worker", server.url, write_rules(stack))
        wait_drained(r, max(120.0, n / 100), "throughput")
        wall = time.monotonic() - t_start
        worker_pct = cpu_seconds(worker.pid) / wall * 100
        redis_pct = (cpu_seconds(server.proc.pid) - redis_cpu0) / wall * 100
        runs = list(audit_records(r, "run"))
        per_id = Counter(f["id"] for _, f in runs)
        status = Counter(f["status"] for _, f in runs)
        span_s = (runs[-1][0] - runs[0][0]) / 1000 if len(runs) > 1 else 0.0
        steady = (len(runs) - 1) / span_s if span_s else 0.0
        lost = n - len(per_id)
        twice = sum(1 for c in per_id.values() if c > 1)
        log(f"  {len(runs)} runs {dict(status)}; {steady:.0f} events/s first to last run")
        log(f"  CPU: worker {worker_pct:.0f}%, redis {redis_pct:.0f}% of a core (incl. start-up)")
        out["throughput"] = {
            "runs": len(runs),
            "statuses": dict(status),
            "lost": lost,
            "duplicates": twice,
            "events_per_s": round(steady, 1),
            "wall_s_from_start": round(wall, 2),
            "events_per_s_incl_startup": round(n / wall, 1),
            "worker_cpu_pct": round(worker_pct, 1),
            "redis_cpu_pct": round(redis_pct, 1),
        }

        receiver, port = start_receiver(stack, "receiver", server.url)
        log(f"latency: {paced_count} events at {args.rate:g}/s through the receiver")
        ids = asyncio.run(paced(port, bodies[n:], args.rate))
        lat = run_latencies(r, ids, 60.0)
        p50, p99 = pct(lat, 50), pct(lat, 99)
        log(f"  202 -> run start: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(lat)} ms")
        out["latency_ms"] = {"p50": p50, "p99": p99, "max": max(lat), "count": len(lat)}

        wait_drained(r, 30, "latency")
        stack.stop(receiver)
        time.sleep(1.0)
        log(f"idle: worker CPU over {args.idle:g}s with an empty queue")
        c0, t0 = cpu_seconds(worker.pid), time.monotonic()
        time.sleep(args.idle)
        idle_pct = (cpu_seconds(worker.pid) - c0) / (time.monotonic() - t0) * 100
        log(f"  {idle_pct:.2f}% of a core")
        out["idle_cpu_pct"] = round(idle_pct, 2)
        r.close()

    checks = [
        verdict(
            "worker >= 2000 events/s",
            steady >= RATE_TARGET,
            f"{steady:.0f}/s, margin {(steady / RATE_TARGET - 1) * 100:+.0f}% "
            f"({n / wall:.0f}/s counting the worker's start-up)",
        ),
        verdict(
            "every queued event ran exactly once",
            lost == 0 and twice == 0 and status == Counter(ok=n),
            f"{lost} lost, {twice} twice, statuses {dict(status)}",
        ),
        verdict(
            "202 -> step start p50 <= 10 ms",
            p50 <= P50_TARGET_MS,
            f"{p50:.0f} ms, margin {P50_TARGET_MS - p50:+.0f} ms",
        ),
        verdict(
            "202 -> step start p99 <= 50 ms",
            p99 <= P99_TARGET_MS,
            f"{p99:.0f} ms, margin {P99_TARGET_MS - p99:+.0f} ms",
        ),
        verdict(
            "idle worker CPU <= 2% of a core",
            idle_pct <= IDLE_TARGET_PCT,
            f"{idle_pct:.2f}%, margin {IDLE_TARGET_PCT - idle_pct:+.2f} points",
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
