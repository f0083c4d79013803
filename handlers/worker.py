"""The arq worker: jobs ``process_event`` (match rules, run them) and ``run_rule`` (one
rule again, after a deferral or from the dead-letter list).

Crash recovery: arq marks a running job with an in-progress key; we keep that key short
(``IN_PROGRESS_TTL_S``) and refresh it from a heartbeat while the job runs, so when a
worker dies its jobs are picked up by another within seconds, not after the job timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from handlers.audit import Audit, RunLog
from handlers.batch import Batcher, Command
from handlers.client import ApiClient
from handlers.metrics import WorkerMetrics
from handlers.netguard import TargetClient
from handlers.ordering import ResourceOrder
from handlers.redact import secret_values
from handlers.reload import RulesReloader, publish
from handlers.rules import Rule, RuleSet, load_rules
from handlers.runner import Outcome, Services, run_rule, superseded_by
from handlers.slots import RuleSlots
from handlers.wakeup import WakingWorker
from receiver import jobs, logctx
from receiver.connection import RETRY_ERRORS, connect, retry_policy
from receiver.deadletters import DeadLetters
from receiver.keys import Keys
from receiver.settings import Settings, redact_redis_url

logger = logging.getLogger("tashooks.worker")

SERVICES = "tashooks"
# Commands for a run's last write, given how the run ended (see handlers.audit.RunLog).
Ending = Callable[[str], list[Command]]
# A job whose worker died this many times is dead-lettered instead of tried again.
MAX_JOB_TRIES = 10
IN_PROGRESS_TTL_S = 15.0
HEARTBEAT_S = 5.0


async def process_event(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, str]:
    """Match the event against the rules and run every matching rule (concurrently).

    Ordered rules (the default) of an event about a resource run under that resource's
    lock, and not at all when a newer event about it was handled already (stale).
    """
    svc: Services = ctx[SERVICES]
    order: ResourceOrder = ctx["order"]
    event = payload["event"]
    event_id = payload["id"]
    logctx.event_id.set(event_id)
    if ctx.get("job_try", 1) > MAX_JOB_TRIES:
        dl_id = await svc.deadletters.add(
            {
                "event_id": event_id,
                "event": event,
                "rule": None,
                "error": f"the worker stopped {MAX_JOB_TRIES} times while handling this event",
                "attempts": ctx["job_try"],
            }
        )
        await svc.audit.run(RunLog(event_id, "*"), "failed", deadletter=dl_id)
        return {}
    rules = svc.rules.match(event)
    data = event.get("data")
    resource = data.get("id") if isinstance(data, dict) else None
    # Removes the job in the last write of its only run (see handlers.wakeup).
    finish: Ending | None = ctx.get("finish")
    if not isinstance(resource, str) or not resource:
        return await _run_all(ctx, payload, rules, on_end=finish if len(rules) <= 1 else None)
    ordered = [r for r in rules if r.ordered]
    unordered = [r for r in rules if not r.ordered]
    async with order.locked(resource, int(payload.get("ts_ms", 0))) as lease:
        if not lease.fresh and not payload.get("replay"):
            for rule in ordered:
                await svc.audit.run(
                    RunLog(event_id, rule.name),
                    "stale",
                    error="a newer event about this resource was handled",
                )
            if not unordered:
                await _no_match(svc, payload, stale=True)
            return await _run_all(ctx, payload, unordered, quiet=True)
        if not unordered:
            # One rule (the common case) or none: its last write also releases the lock
            # and removes the job.
            on_end = _chain(lease.releasing, finish) if len(ordered) <= 1 else None
            return await _run_all(ctx, payload, ordered, on_end=on_end)
        results = await asyncio.gather(
            _run_all(ctx, payload, ordered, quiet=True),
            _run_all(ctx, payload, unordered, quiet=True),
        )
        return {**results[0], **results[1]}


def _chain(*endings: Ending | None) -> Ending:
    """One ending that gives the commands of each of ``endings``, in order."""

    def chained(status: str) -> list[Command]:
        return [c for ending in endings if ending is not None for c in ending(status)]

    return chained


async def _no_match(
    svc: Services,
    payload: Mapping[str, Any],
    stale: bool = False,
    on_end: Ending | None = None,
) -> None:
    status = "stale" if stale else "no_match"
    await svc.audit.record(
        "run",
        on_end(status) if on_end is not None else (),
        id=payload["id"],
        status=status,
        type=str(payload["event"].get("event", "")),
    )


async def _run_all(
    ctx: Mapping[str, Any],
    payload: Mapping[str, Any],
    rules: list[Rule],
    quiet: bool = False,
    on_end: Ending | None = None,
) -> dict[str, str]:
    svc: Services = ctx[SERVICES]
    if not rules:
        if not quiet:
            await _no_match(svc, payload, on_end=on_end)
        return {}
    # A job's first try cannot have finished steps to skip: no need to look them up.
    fresh = ctx.get("job_try", 1) == 1
    if len(rules) == 1:  # the common case, without gather's tasks
        outcomes = [await run_rule(svc, payload, rules[0], fresh=fresh, on_end=on_end)]
    else:
        outcomes = await asyncio.gather(
            *(run_rule(svc, payload, rule, fresh=fresh, on_end=on_end) for rule in rules)
        )
    for rule, outcome in zip(rules, outcomes, strict=True):
        await _defer_if_needed(ctx, payload, rule.name, outcome)
    return {rule.name: outcome.status for rule, outcome in zip(rules, outcomes, strict=True)}


async def run_rule_job(
    ctx: dict[str, Any],
    payload: dict[str, Any],
    rule_name: str,
    attempts_made: dict[str, int] | None = None,
    throttle: bool = False,
) -> str:
    """Run one rule of an event again (a deferred retry, or a dead letter retried).

    Not when the event was replayed since this run began: the replay ran its rules afresh,
    and the older run must not run them a second time."""
    svc: Services = ctx[SERVICES]
    logctx.event_id.set(payload["id"])
    replays = await superseded_by(svc, payload)
    if replays:
        logger.info(
            "rule %s not run again: the event was replayed since (replay %s)",
            rule_name,
            replays,
            extra={"event_id": payload["id"]},
        )
        return "superseded"
    rule = svc.rules.get(rule_name)
    if rule is None:
        dl_id = await svc.deadletters.add(
            {
                "event_id": payload["id"],
                "event": payload["event"],
                "rule": rule_name,
                "error": f"rule {rule_name!r} is no longer in the rules file",
                "attempts": 0,
            }
        )
        await svc.audit.run(RunLog(payload["id"], rule_name), "failed", deadletter=dl_id)
        return "failed"
    made = {int(k): v for k, v in (attempts_made or {}).items()}
    data = payload["event"].get("data")
    resource = data.get("id") if isinstance(data, dict) else None
    # An ordered rule's deferred run keeps its place: under the resource's lock, and not at
    # all once a newer event about the resource was handled while it waited (stale).
    # Replays and dead-letter retries are asked for by a person: never stale.
    order: ResourceOrder = ctx["order"]
    ordered = rule.ordered and isinstance(resource, str) and bool(resource)
    locked = (
        order.locked(str(resource), int(payload.get("ts_ms", 0)))
        if ordered
        else contextlib.nullcontext(None)
    )
    async with locked as lease:
        if (
            lease is not None
            and not lease.fresh
            and not payload.get("replay")
            and not payload.get("retry")
        ):
            await svc.audit.run(
                RunLog(payload["id"], rule_name),
                "stale",
                error="a newer event about this resource was handled while this run waited",
            )
            return "stale"
        outcome = await run_rule(svc, payload, rule, attempts_made=made, check_throttle=throttle)
    await _defer_if_needed(ctx, payload, rule_name, outcome)
    return outcome.status


async def _defer_if_needed(
    ctx: Mapping[str, Any], payload: Mapping[str, Any], rule_name: str, outcome: Outcome
) -> None:
    if outcome.status != "deferred":
        return
    attempts = {str(k): v for k, v in (outcome.attempts or {}).items()}
    svc: Services = ctx[SERVICES]
    # Unique per deferral: a rule may be delayed (by a 429 or its throttle) several times.
    seq = await svc.redis.hincrby(  # type: ignore[misc]
        svc.keys.event(payload["id"]), f"deferrals:{rule_name}", 1
    )
    await ctx["redis"].enqueue_job(
        jobs.RUN_RULE,
        dict(payload),
        rule_name,
        attempts,
        outcome.recheck_throttle,
        _job_id=f"{payload['id']}:{rule_name}:deferred:{seq}",
        _defer_by=outcome.delay,
        # Kept as long as deliveries are (arq's default would be one day).
        _expires=outcome.delay + svc.retention_s,
    )


async def _heartbeat(ctx: dict[str, Any]) -> None:
    """Keep this worker's running jobs and resource locks marked as alive."""
    worker: Worker = ctx["worker"]
    svc: Services = ctx[SERVICES]
    order: ResourceOrder = ctx["order"]
    ttl_ms = int(IN_PROGRESS_TTL_S * 1000)
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            running = [job_id for job_id, task in worker.tasks.items() if not task.done()]
            async with svc.redis.pipeline(transaction=False) as pipe:
                for job_id in running:
                    pipe.pexpire(in_progress_key_prefix + job_id, ttl_ms, xx=True)
                pipe.zadd(svc.keys.workers, {ctx["worker_id"]: int(time.time() * 1000)})
                # Again each beat: a Redis that lost its data learns the version back.
                pipe.set(svc.keys.rules_version, svc.rules.version_hash)
                await pipe.execute()
            await order.refresh()
            await svc.slots.refresh()
        except (RedisError, OSError) as exc:  # an outage: the commands retry meanwhile
            logger.warning(
                "Redis unreachable (%s): the worker keeps retrying for up to %gs "
                "(TASHOOKS_REDIS_RETRY), then exits; check that Redis runs",
                exc,
                ctx["settings"].redis_retry,
            )
        except Exception:  # never let the heartbeat die: log and try again
            logger.exception("worker heartbeat failed")


async def wait_for_redis(settings: Settings, stop: asyncio.Event) -> bool:
    """Wait up to ``REDIS_RETRY`` for Redis to answer before the worker starts, saying so
    every few seconds; False when ``stop`` was set meanwhile. Raises ``RedisConnectionError``
    when it does not answer in time (the caller exits non-zero for its supervisor)."""
    deadline = time.monotonic() + settings.redis_retry
    said = -math.inf
    client = connect(settings.redis_url, socket_timeout=2.0)
    try:
        while True:
            try:
                await client.ping()
                return True
            except (RedisError, OSError) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RedisConnectionError(str(exc) or type(exc).__name__) from exc
                if time.monotonic() - said >= 10:
                    said = time.monotonic()
                    logger.warning(
                        "Redis at %s is unreachable (%s); the worker waits for it %.0fs more "
                        "(TASHOOKS_REDIS_RETRY); check that it runs and TASHOOKS_REDIS_URL",
                        redact_redis_url(settings.redis_url),
                        exc,
                        left,
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if stop.is_set():
                return False
    finally:
        await client.aclose()


def _mask_in_logs(values: tuple[str, ...]) -> None:
    """Have the log handlers' secret filters (``tashooks.logs``) mask ``values`` too."""
    for handler in logging.getLogger().handlers:
        for log_filter in handler.filters:
            add = getattr(log_filter, "add_secrets", None)
            if add is not None:
                add(values)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    keys = Keys(settings.namespace)
    batch: Batcher = ctx["worker"].batch
    redis = connect(settings.redis_url, retry_s=settings.redis_retry)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    metrics: WorkerMetrics = ctx["metrics"]
    api = ApiClient(
        settings.api_url,
        api_key,
        max_connections=settings.api_max_connections,
        on_response=metrics.api_call,
    )
    # Checks every address it connects to (and connects to the checked one): targets on
    # private networks are refused unless the rules file allows them.
    http = TargetClient(timeout=10.0, headers={"User-Agent": "tashooks/0.1"})
    rules: RuleSet = ctx["rules"]
    ctx[SERVICES] = Services(
        redis=redis,
        keys=keys,
        api=api,
        http=http,
        audit=Audit(batch, keys, settings.dedup_window, metrics),
        deadletters=DeadLetters(redis, keys),
        data_dir=settings.data_dir,
        retention_s=settings.dedup_window,
        rules=rules,
        slots=RuleSlots(redis, keys),
        metrics=metrics,
        secrets=secret_values([*settings.secret_values(), *rules.env_values]),
    )
    _mask_in_logs(rules.env_values)
    ctx["order"] = ResourceOrder(batch, keys, settings.dedup_window)
    ctx["worker_id"] = f"{socket.gethostname()}:{os.getpid()}:{id(ctx) & 0xFFFF:x}"
    ctx["heartbeat"] = asyncio.create_task(_heartbeat(ctx))
    svc: Services = ctx[SERVICES]
    await redis.zadd(keys.workers, {ctx["worker_id"]: int(time.time() * 1000)})
    await publish(redis, keys, rules, svc.audit, "start")
    if ctx.get("watch_rules"):

        def apply(new: RuleSet) -> None:
            svc.rules = new
            svc.secrets = secret_values([*settings.secret_values(), *new.env_values])
            _mask_in_logs(new.env_values)
            ctx["rules"] = new

        reloader = RulesReloader(rules.path, rules, apply, redis, keys, svc.audit)
        ctx["reloader"] = reloader
        ctx["watch"] = asyncio.create_task(reloader.watch())
    logger.info(
        "worker ready: %d rules from %s (version %s)",
        len(rules.rules),
        settings.rules,
        rules.version_hash,
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    for name in ("heartbeat", "watch"):
        task: asyncio.Task[None] | None = ctx.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    svc: Services | None = ctx.get(SERVICES)
    if svc is None:
        return
    with contextlib.suppress(Exception):
        await svc.redis.zrem(svc.keys.workers, ctx["worker_id"])
    await svc.api.aclose()
    await svc.http.aclose()
    await svc.redis.aclose()
    batch: Batcher = ctx["worker"].batch
    await batch.close()
    await batch.redis.aclose()


def create_worker(
    settings: Settings, *, rules: RuleSet | None = None, metrics: WorkerMetrics | None = None
) -> Worker:
    """An arq worker for ``settings`` (call inside a running event loop). Signals are the
    caller's to handle (see ``tashooks.daemon``); ``reload_rules(worker)`` reloads.

    ``rules`` overrides loading the rules file (tests, demo); it must be loaded already so
    that a bad file is refused before the worker starts. Rules loaded here from
    ``settings.rules`` are also reloaded when the file changes.
    """
    watch = rules is None
    if rules is None:
        rules = load_rules(settings.rules)
    keys = Keys(settings.namespace)
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    redis_settings.retry = retry_policy(settings.redis_retry)
    redis_settings.retry_on_error = RETRY_ERRORS
    # wait_for_redis has seen Redis answer: arq's own retries (each a whole retry policy
    # long) would only multiply the wait when it is gone again.
    redis_settings.conn_retries = 1
    ctx: dict[str, Any] = {
        "settings": settings,
        "rules": rules,
        "watch_rules": watch,
        "metrics": metrics or WorkerMetrics(),
    }
    worker = WakingWorker(
        functions=[
            func(process_event, name=jobs.PROCESS_EVENT),
            func(run_rule_job, name=jobs.RUN_RULE),
        ],
        queue_name=keys.queue,
        redis_settings=redis_settings,
        job_serializer=jobs.serialize,
        job_deserializer=jobs.deserialize,
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx=ctx,
        poll_delay=settings.poll_delay,
        max_jobs=settings.max_jobs,
        keep_result=0,
        max_tries=1000,  # our own limit is MAX_JOB_TRIES, with a dead letter instead of a drop
        job_timeout=3600,
        handle_signals=False,
        health_check_interval=10,
        health_check_key=f"{keys.ns}:worker:health",
        wake_channel=keys.wake,
        redis_url=settings.redis_url,
        # Its own connections: the batcher bounds each exchange, not each reply.
        batch=Batcher(
            connect(settings.redis_url, retry_s=settings.redis_retry, socket_timeout=None)
        ),
    )
    # arq would wait job_timeout + 10 s before another worker may take over a job whose
    # worker died; the heartbeat keeps live jobs' keys fresh, so a short TTL is safe.
    worker.in_progress_timeout_s = IN_PROGRESS_TTL_S
    ctx["worker"] = worker
    return worker


async def reload_rules(worker: Worker, reason: str = "SIGHUP") -> bool:
    """Reload the worker's rules file now (SIGHUP); False when refused or not reloadable."""
    reloader: RulesReloader | None = worker.ctx.get("reloader")
    if reloader is None:
        logger.warning("%s: these rules were not loaded from a file; nothing to reload", reason)
        return False
    return await reloader.reload(reason)
