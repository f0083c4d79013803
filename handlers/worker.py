"""The arq worker: jobs ``process_event`` (match rules, run them) and ``run_rule`` (one
rule again, after a deferral or from the dead-letter list)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from arq.connections import RedisSettings
from arq.worker import Worker

from handlers.audit import Audit
from handlers.client import ApiClient
from handlers.deadletters import DeadLetters
from handlers.rules import RuleSet, load_rules
from handlers.runner import Outcome, Services, run_rule
from receiver import jobs
from receiver.connection import connect
from receiver.keys import Keys
from receiver.settings import Settings

logger = logging.getLogger("tashooks.worker")

SERVICES = "tashooks"
# A job whose worker died this many times is dead-lettered instead of tried again.
MAX_JOB_TRIES = 10


async def process_event(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, str]:
    """Match the event against the rules and run every matching rule (concurrently)."""
    svc: Services = ctx[SERVICES]
    event = payload["event"]
    if ctx.get("job_try", 1) > MAX_JOB_TRIES:
        dl_id = await svc.deadletters.add(
            {
                "event_id": payload["id"],
                "event": event,
                "rule": None,
                "error": f"the worker stopped {MAX_JOB_TRIES} times while handling this event",
                "attempts": ctx["job_try"],
            }
        )
        await svc.audit.record("run", id=payload["id"], status="failed", deadletter=dl_id)
        return {}
    rules = svc.rules.match(event)
    if not rules:
        await svc.audit.record(
            "run", id=payload["id"], status="no_match", type=str(event.get("event", ""))
        )
        return {}
    outcomes = await asyncio.gather(*(run_rule(svc, payload, rule) for rule in rules))
    for rule, outcome in zip(rules, outcomes, strict=True):
        await _defer_if_needed(ctx, payload, rule.name, outcome)
    return {rule.name: outcome.status for rule, outcome in zip(rules, outcomes, strict=True)}


async def run_rule_job(
    ctx: dict[str, Any],
    payload: dict[str, Any],
    rule_name: str,
    attempts_made: dict[str, int] | None = None,
) -> str:
    """Run one rule of an event again (a deferred retry, or a dead letter retried)."""
    svc: Services = ctx[SERVICES]
    rule = next((r for r in svc.rules.rules if r.name == rule_name), None)
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
        await svc.audit.record(
            "run", id=payload["id"], rule=rule_name, status="failed", deadletter=dl_id
        )
        return "failed"
    made = {int(k): v for k, v in (attempts_made or {}).items()}
    outcome = await run_rule(svc, payload, rule, attempts_made=made, check_throttle=False)
    await _defer_if_needed(ctx, payload, rule_name, outcome)
    return outcome.status


async def _defer_if_needed(
    ctx: Mapping[str, Any], payload: Mapping[str, Any], rule_name: str, outcome: Outcome
) -> None:
    if outcome.status != "deferred":
        return
    attempts = {str(k): v for k, v in (outcome.attempts or {}).items()}
    n = sum(attempts.values())
    await ctx["redis"].enqueue_job(
        jobs.RUN_RULE,
        dict(payload),
        rule_name,
        attempts,
        _job_id=f"{payload['id']}:{rule_name}:deferred:{n}",
        _defer_by=outcome.delay,
    )


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    keys = Keys(settings.namespace)
    redis = connect(settings.redis_url)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    api = ApiClient(settings.api_url, api_key)
    http = httpx.AsyncClient(
        timeout=10.0, follow_redirects=False, headers={"User-Agent": "tashooks/0.1"}
    )
    rules: RuleSet = ctx.get("rules") or load_rules(settings.rules)
    ctx[SERVICES] = Services(
        redis=redis,
        keys=keys,
        api=api,
        http=http,
        audit=Audit(redis, keys, settings.dedup_window),
        deadletters=DeadLetters(redis, keys),
        data_dir=settings.data_dir,
        retention_s=settings.dedup_window,
        rules=rules,
    )
    logger.info("worker ready: %d rules from %s", len(rules.rules), settings.rules)


async def _shutdown(ctx: dict[str, Any]) -> None:
    svc: Services | None = ctx.get(SERVICES)
    if svc is None:
        return
    await svc.api.aclose()
    await svc.http.aclose()
    await svc.redis.aclose()


def create_worker(
    settings: Settings,
    *,
    rules: RuleSet | None = None,
    handle_signals: bool = True,
    grace_s: float = 30.0,
) -> Worker:
    """An arq worker for ``settings`` (call inside a running event loop).

    ``rules`` overrides loading the rules file (tests, demo); it must be loaded already so
    that a bad file is refused before the worker starts.
    """
    if rules is None:
        rules = load_rules(settings.rules)
    keys = Keys(settings.namespace)
    return Worker(
        functions=[_named(process_event, jobs.PROCESS_EVENT), _named(run_rule_job, jobs.RUN_RULE)],
        queue_name=keys.queue,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        job_serializer=jobs.serialize,
        job_deserializer=jobs.deserialize,
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings, "rules": rules},
        poll_delay=settings.poll_delay,
        max_jobs=settings.max_jobs,
        keep_result=0,
        max_tries=1000,  # our own limit is MAX_JOB_TRIES, with a dead letter instead of a drop
        job_timeout=3600,
        handle_signals=handle_signals,
        job_completion_wait=int(grace_s),
        health_check_interval=10,
        health_check_key=f"{keys.ns}:worker:health",
    )


def _named(coroutine: Any, name: str) -> Any:
    from arq.worker import func

    return func(coroutine, name=name)
