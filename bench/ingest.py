"""Ingest benchmark: the receiver against a bare aiohttp app and adnanh/webhook.

    .venv/bin/python bench/ingest.py [--duration 10] [--connections 64] [--json]

Starts its own Redis (AOF, ``--fsync always`` by default), the receiver (``tashooks
receiver``), a bare aiohttp app (reads the body, answers 202) and ``/usr/bin/webhook``
(checks the same X-Signature, runs /bin/true). wrk drives each in turn with the same
load: ``-t1 -c<connections>``, signed bodies that are all distinct events. Warm-up 2 s
each, then bare, receiver, webhook, the bare app spinning ``--burn-us`` (10) µs of CPU per
request (what a little per-request work costs the HTTP stack's rate), bare again (the
spread of the two bare runs shows the noise; the ratio uses their mean).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from common import (
    PYTHON,
    ROOT,
    SECRET,
    Stack,
    audit_records,
    bench_parser,
    cpu_seconds,
    free_port,
    log,
    machine,
    parse_bench_args,
    peak_rss_mb,
    queued,
    require,
    run_main,
    start_receiver,
    verdict,
)
from loadgen import WrkResult, settle, write_bodies, write_lua, wrk_run

RATIO_TARGET = 0.65
P99_TARGET_MS = 25.0


def webhook_hooks() -> list[dict[str, Any]]:
    """One hook, ``/hooks/webhooks``: the same HMAC-SHA256 check of X-Signature, /bin/true."""
    return [
        {
            "id": "webhooks",
            "execute-command": "/bin/true",
            "http-methods": ["POST"],
            "success-http-response-code": 202,
            "trigger-rule-mismatch-http-response-code": 401,
            "trigger-rule": {
                "match": {
                    "type": "payload-hmac-sha256",
                    "secret": SECRET,
                    "parameter": {"source": "header", "name": "X-Signature"},
                }
            },
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds each (2)")
    parser.add_argument("--bodies", type=int, help="distinct bodies (default: enough)")
    parser.add_argument("--no-webhook", action="store_true", help="skip adnanh/webhook")
    parser.add_argument(
        "--burn-us",
        type=float,
        default=10.0,
        help="also run the bare app spinning this many µs per request (10; 0: skip)",
    )
    args = parse_bench_args(parser, argv)
    use_webhook = not args.no_webhook
    require("wrk", "redis-server", *(["webhook"] if use_webhook else []))
    count = args.bodies or max(150_000, int(15_000 * (args.duration + args.warmup)))
    d, c = args.duration, args.connections

    with Stack() as stack:
        server = stack.redis(args.fsync)
        log(f"redis-server on port {server.port} (appendonly yes, appendfsync {args.fsync})")
        log(f"signing {count} distinct bodies")
        bodies = write_bodies(stack, count)
        lua = write_lua(stack, bodies, "/webhooks", "webhooks")
        bare_port = free_port()
        bare = stack.start("bare", [PYTHON, str(ROOT / "bench" / "bare_app.py"), str(bare_port)])
        stack.wait_port("bare", bare, bare_port)
        receiver, rport = start_receiver(stack, "receiver", server.url)
        targets = {
            "bare": f"http://127.0.0.1:{bare_port}/webhooks",
            "receiver": f"http://127.0.0.1:{rport}/webhooks",
        }
        scripts = {"bare": lua, "receiver": lua}
        pids = {"bare": [bare.pid], "receiver": [receiver.pid, server.proc.pid]}
        if args.burn_us:
            # The yardstick: the same bare app, with only a spin of CPU added per request.
            burn_port = free_port()
            burn_argv = [PYTHON, str(ROOT / "bench" / "bare_app.py"), str(burn_port)]
            burn = stack.start("burn", [*burn_argv, str(args.burn_us)])
            stack.wait_port("burn", burn, burn_port)
            targets["burn"] = f"http://127.0.0.1:{burn_port}/webhooks"
            scripts["burn"] = lua
            pids["burn"] = [burn.pid]
        if use_webhook:
            hooks = stack.dir / "hooks.json"
            hooks.write_text(json.dumps(webhook_hooks()))
            wport = free_port()
            argv_w = ["webhook", "-hooks", str(hooks), "-port", str(wport), "-ip", "127.0.0.1"]
            webhook = stack.start("webhook", argv_w)
            stack.wait_port("webhook", webhook, wport)
            targets["webhook"] = f"http://127.0.0.1:{wport}/hooks/webhooks"
            scripts["webhook"] = write_lua(stack, bodies, "/hooks/webhooks", "hooks")
            pids["webhook"] = [webhook.pid]
        log(
            f"bare :{bare_port}, receiver :{rport}" + (f", webhook :{wport}" if use_webhook else "")
        )

        cursor = 0  # the receiver's bodies never repeat: each run starts where the last ended
        cpu: dict[str, list[int]] = {}

        def run(name: str, seconds: float, label: str) -> WrkResult:
            nonlocal cursor
            start = cursor if name == "receiver" else 0
            idle = settle()
            busy = f" (machine still {idle:.0f}% busy after 30 s)" if idle >= 15 else ""
            log(f"{label} {name}: wrk -t1 -c{c} -d{seconds:g}s{busy}")
            t0, cpu0 = time.monotonic(), [cpu_seconds(pid) for pid in pids[name]]
            result = wrk_run(scripts[name], targets[name], seconds, c, start, pids[name])
            wall = time.monotonic() - t0
            # Each process's CPU over the run (% of a core): the server, then Redis.
            cpu[name] = [
                round((cpu_seconds(pid) - before) / wall * 100)
                for pid, before in zip(pids[name], cpu0, strict=True)
            ]
            if name == "receiver":
                cursor = result.next_index
                if result.wraps:
                    log("WARNING: the bodies wrapped round; use --bodies for more")
            log(f"  {name:8} {result.line()}")
            return result

        for name in targets:
            run(name, args.warmup, "warm-up")
        results: dict[str, WrkResult] = {}
        results["bare"] = run("bare", d, "run")
        results["receiver"] = run("receiver", d, "run")
        if use_webhook:
            results["webhook"] = run("webhook", d, "run")
        if args.burn_us:
            results["burn"] = run("burn", d, "run")
        results["bare2"] = run("bare", d, "run")
        rss = peak_rss_mb(receiver.pid)

        r = redis.Redis(port=server.port)
        accepted = queued(r)
        duplicates = sum(1 for _, f in audit_records(r, "delivery") if f["status"] == "duplicate")
        r.close()

    rec = results["receiver"]
    bare_rps = (results["bare"].rps + results["bare2"].rps) / 2
    ratio = rec.rps / bare_rps
    non202 = rec.non2xx + rec.socket_errors + duplicates
    out: dict[str, Any] = {
        "machine": machine(),
        "settings": {"duration_s": d, "connections": c, "appendfsync": args.fsync},
        "runs": {k: v.as_dict() for k, v in results.items()},
        "bare_rps_mean": round(bare_rps, 1),
        "ratio_receiver_bare": round(ratio, 3),
        "receiver_peak_rss_mb": round(rss, 1),
        "receiver_accepted_total": accepted,
        "receiver_non202": non202,
        "receiver_duplicates": duplicates,
        "cpu_pct_of_a_core": cpu,
    }
    if use_webhook:
        out["ratio_webhook_bare"] = round(results["webhook"].rps / bare_rps, 3)
        # The other yardstick: adnanh/webhook's rate, which stores nothing.
        out["ratio_receiver_webhook"] = round(rec.rps / results["webhook"].rps, 3)

    def us_per_event(name: str, index: int = 0) -> float:
        """CPU time (µs) a process spent per request of the run."""
        rps = results[name].rps
        return cpu[name][index] * 10_000 / rps if rps else 0.0

    if args.burn_us:
        out["ratio_burn_bare"] = round(results["burn"].rps / bare_rps, 3)
    yardstick = (
        f"; the bare app itself falls to {out['ratio_burn_bare']:.2f} x with {args.burn_us:g} µs "
        "of CPU spun per request"
        if args.burn_us
        else ""
    )
    why = (
        f"; why: the receiver spends {us_per_event('receiver'):.0f} µs of CPU per delivery "
        f"(bare: {us_per_event('bare'):.0f} µs) in verify, parse, canonical form and the "
        f"batched script call, and Redis {us_per_event('receiver', 1):.0f} µs on the core "
        f"that wrk needs too{yardstick}"
        if ratio < RATIO_TARGET
        else ""
    )
    checks = [
        verdict(
            "receiver >= 0.65 x bare events/s",
            ratio >= RATIO_TARGET,
            f"{ratio:.2f} x ({rec.rps:.0f} vs {bare_rps:.0f}/s), "
            f"margin {(ratio / RATIO_TARGET - 1) * 100:+.0f}%{why}",
        ),
        verdict(
            "receiver p99 <= 25 ms",
            rec.p99_ms <= P99_TARGET_MS,
            f"{rec.p99_ms:.1f} ms, margin {(1 - rec.p99_ms / P99_TARGET_MS) * 100:+.0f}%",
        ),
        verdict(
            "every receiver answer is 202",
            non202 == 0,
            f"{non202} non-202 ({rec.non2xx} non-2xx, {duplicates} duplicates, "
            f"{rec.socket_errors} socket errors); {accepted} accepted in all runs",
        ),
    ]
    out["checks"] = checks
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        m = out["machine"]
        print(f"\nmachine: {m['nproc']} cores, {m['cpu']}; redis appendfsync {args.fsync}")
        print(f"wrk -t1 -c{c} -d{d:g}s, signed distinct events")
        for name, res in results.items():
            print(f"  {name:8} {res.line()}")
        print(f"receiver / bare (mean of both bare runs): {ratio:.2f}")
        if args.burn_us:
            print(
                f"bare + {args.burn_us:g} µs spun per request / bare: {out['ratio_burn_bare']:.2f}"
            )
        if use_webhook:
            print(f"webhook  / bare: {out['ratio_webhook_bare']:.2f}")
            print(
                f"receiver / webhook: {out['ratio_receiver_webhook']:.2f} (webhook stores "
                "nothing and answers before its command ends)"
            )
        print(f"receiver peak RSS (VmHWM): {rss:.1f} MiB")
        print("\n".join(checks))
    return 0 if all(c.startswith("PASS") for c in checks) else 1


if __name__ == "__main__":
    run_main(main)
