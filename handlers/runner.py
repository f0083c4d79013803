"""Running one rule for one event: throttle, steps in order with timeout and retry,
progress kept in Redis (so a re-run skips finished steps), dead letters on failure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from handlers.audit import Audit, RunLog
from handlers.batch import Command
from handlers.client import ApiClient
from handlers.exceptions import Deferred, StepError, StepTimeout
from handlers.metrics import WorkerMetrics
from handlers.redact import mask_text, redact, summarize
from handlers.slots import RuleSlots
from handlers.steps.base import StepContext
from handlers.templates import render
from receiver.deadletters import DeadLetters
from receiver.jobs import run_generation
from receiver.keys import Keys

if TYPE_CHECKING:
    from handlers.rules import Rule, RuleSet, StepSpec

logger = logging.getLogger("tashooks.worker")

# Waits longer than this are not slept inside a job: the rule is re-queued for later.
MAX_INLINE_SLEEP_S = 30.0


@dataclass
class Services:
    """What rule runs share inside one worker process."""

    redis: aioredis.Redis
    keys: Keys
    api: ApiClient
    http: httpx.AsyncClient
    audit: Audit
    deadletters: DeadLetters
    data_dir: Path
    retention_s: float
    rules: RuleSet
    slots: RuleSlots
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # Configured secret values, masked in what runs record (see handlers.redact).
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a rule run ended: ok, failed (dead-lettered), deferred or throttled."""

    status: str
    detail: str = ""
    delay: float = 0.0
    attempts: Mapping[int, int] | None = None
    # A run delayed by its throttle must pass the throttle again when it comes back.
    recheck_throttle: bool = False


def _context(payload: Mapping[str, Any], rule: Rule, steps: dict[str, Any]) -> dict[str, Any]:
    return {"event": payload["event"], "steps": steps, "rule": rule.name, "event_id": payload["id"]}


async def _throttled(svc: Services, rule: Rule, payload: Mapping[str, Any]) -> float | None:
    """Fixed-window throttle: None when the run may go ahead, else the seconds until the
    rule's window for this key ends."""
    throttle = rule.throttle
    if throttle is None:
        return None
    key = render(throttle.key, _context(payload, rule, {}))
    redis_key = svc.keys.throttle(rule.name, key)
    async with svc.redis.pipeline(transaction=True) as pipe:
        pipe.incr(redis_key)
        pipe.expire(redis_key, max(1, int(throttle.per)), nx=True)
        pipe.pttl(redis_key)
        count, _, pttl = await pipe.execute()
    if int(count) <= throttle.limit:
        return None
    return max(0.05, int(pttl) / 1000)


async def run_rule(
    svc: Services,
    payload: Mapping[str, Any],
    rule: Rule,
    *,
    attempts_made: Mapping[int, int] | None = None,
    check_throttle: bool = True,
    fresh: bool = False,
    on_end: Callable[[str], list[Command]] | None = None,
) -> Outcome:
    """Run ``rule``'s steps for the event in ``payload`` (``fresh``: its first run, with no
    progress to look up; a replay's earlier progress is dropped). Never raises for a failure of the
    rule (a step, a template, a bug): those end in the dead-letter list. Redis errors do
    propagate: the job then runs again, from the first unfinished step.

    Finished steps' results are kept under the run's progress key, so running the same
    rule for the same event again (after a crash, a deferral or a dead-letter retry)
    continues where it stopped instead of repeating side effects.
    """
    log = RunLog(payload["id"], rule.name, on_end=on_end)
    try:
        if rule.concurrency is None:
            return await _run_rule(svc, payload, rule, log, attempts_made, check_throttle, fresh)
        async with svc.slots.hold(rule.name, rule.concurrency):
            return await _run_rule(svc, payload, rule, log, attempts_made, check_throttle, fresh)
    except (RedisError, OSError):
        raise
    except Exception as exc:
        logger.exception("rule %s crashed", rule.name, extra={"event_id": payload["id"]})
        return await _dead_letter(
            svc, payload, rule, log, None, StepError(f"{type(exc).__name__}: {exc}"), 1
        )


async def superseded_by(svc: Services, payload: Mapping[str, Any]) -> int:
    """The number of the event's latest replay when it is newer than the run of ``payload``
    (that run is superseded: the replay runs the rules afresh), else 0."""
    raw = await svc.redis.hget(svc.keys.event(payload["id"]), "replays")  # type: ignore[misc]
    replays = int(raw or 0)
    return replays if replays > int(payload.get("replay") or 0) else 0


async def _dead_letter(
    svc: Services,
    payload: Mapping[str, Any],
    rule: Rule,
    log: RunLog,
    spec: StepSpec | None,
    exc: StepError,
    attempt: int,
) -> Outcome:
    where = spec.label if spec else "its start"
    replays = await superseded_by(svc, payload)
    if replays:
        # A replay queued while this run was going runs the rule again: a dead letter of
        # this run would let a retry run it a third time. The failure stays on record.
        error = f"{_text(svc, exc)} (no dead letter: replay {replays} of the event runs it again)"
        await svc.audit.run(log, "failed", error=error)
        logger.warning(
            "rule %s failed at %s: %s", rule.name, where, error, extra={"event_id": payload["id"]}
        )
        return Outcome("failed", error)
    dl_id = await svc.deadletters.add(
        {
            "event_id": payload["id"],
            "event": payload["event"],
            "rule": rule.name,
            "step": spec.index if spec else None,
            "step_id": spec.id if spec else None,
            "step_type": spec.type if spec else None,
            "error": _text(svc, exc),
            "attempts": attempt,
            "replay": int(payload.get("replay") or 0),
        }
    )
    await svc.audit.run(log, "failed", error=_text(svc, exc), deadletter=dl_id)
    logger.warning(
        "rule %s failed at %s: %s; dead letter %s",
        rule.name,
        where,
        exc,
        dl_id,
        extra={"event_id": payload["id"]},
    )
    return Outcome("failed", _text(svc, exc))


async def _run_rule(
    svc: Services,
    payload: Mapping[str, Any],
    rule: Rule,
    log: RunLog,
    attempts_made: Mapping[int, int] | None,
    check_throttle: bool,
    fresh: bool,
) -> Outcome:
    event_id = payload["id"]
    progress_key = svc.keys.progress(event_id, rule.name)
    done: dict[str, Any] = {}
    if not fresh:
        done_raw: dict[bytes, bytes] = await svc.redis.hgetall(progress_key)  # type: ignore[misc]
        done = {k.decode(): json.loads(v) for k, v in done_raw.items()}
        if done and all(k.isdigit() for k in done):  # by position: an older tashooks
            done = {rule.steps[int(k)].key: v for k, v in done.items() if int(k) < len(rule.steps)}
    elif payload.get("replay"):
        await svc.redis.delete(progress_key)  # a replay starts over
    if check_throttle and not done:
        try:
            throttled = await _throttled(svc, rule, payload)
        except StepError as exc:
            return await _dead_letter(
                svc, payload, rule, log, None, StepError(f"throttle key: {exc}"), 1
            )
        if throttled is not None:
            if rule.throttle is not None and rule.throttle.mode == "delay":
                detail = f"throttled: runs again when the window ends in {throttled:.1f}s"
                await svc.audit.run(log, "deferred", error=detail)
                return Outcome("deferred", detail, throttled, recheck_throttle=True)
            await svc.audit.run(log, "throttled")
            return Outcome("throttled")
    steps: dict[str, Any] = {}
    for spec in rule.steps:
        last = spec is rule.steps[-1]
        if spec.key in done:
            if spec.id:
                steps[spec.id] = done[spec.key]
            # Shown in the run's record (the event view), not written to the stream again.
            earlier = {"step": spec.index, "step_id": spec.id, "status": "done", "earlier": True}
            log.steps.append({k: v for k, v in earlier.items() if v is not None})
            continue
        context = _context(payload, rule, steps)
        first_attempt = 1 + (attempts_made or {}).get(spec.index, 0)
        started = time.monotonic()
        try:
            if not spec.should_run(context):
                svc.audit.step(log, step=spec.index, step_id=spec.id, status="skipped")
                await _finish_step(svc, progress_key, spec, None, log, last)
                continue
            params, result, attempt = await _run_step(
                svc, payload, rule, spec, context, first_attempt
            )
        except Deferred as exc:
            attempt = int(exc.context.get("attempt", first_attempt))
            svc.audit.step(
                log,
                step=spec.index,
                step_id=spec.id,
                status="deferred",
                attempt=attempt,
                error=_text(svc, exc),
                delay_s=round(exc.delay, 3),
            )
            await svc.audit.run(log, "deferred", error=_text(svc, exc))
            return Outcome("deferred", _text(svc, exc), exc.delay, {spec.index: attempt})
        except StepError as exc:
            attempt = int(exc.context.get("attempt", first_attempt))
            _observe(svc, spec, "failed", started)
            svc.audit.step(
                log,
                step=spec.index,
                step_id=spec.id,
                status="failed",
                attempt=attempt,
                duration_ms=_ms_since(started),
                error=_text(svc, exc),
                params=exc.context.get("params"),
            )
            if spec.continue_on_error:
                failed = {"error": _text(svc, exc), "failed": True}
                await _finish_step(svc, progress_key, spec, failed, log, last)
                if spec.id:
                    steps[spec.id] = failed
                continue
            return await _dead_letter(svc, payload, rule, log, spec, exc, attempt)
        if spec.id:
            steps[spec.id] = result
        _observe(svc, spec, "ok", started)
        svc.audit.step(
            log,
            step=spec.index,
            step_id=spec.id,
            status="ok",
            attempt=attempt,
            duration_ms=_ms_since(started),
            params=params,
            result=redact(summarize(result), secrets=svc.secrets),
        )
        await _finish_step(svc, progress_key, spec, result, log, last)
    await svc.audit.run(log, "ok", delete=progress_key)
    return Outcome("ok")


def _observe(svc: Services, spec: StepSpec, status: str, started: float) -> None:
    svc.metrics.step(spec.type, status, time.monotonic() - started)


def _text(svc: Services, exc: BaseException) -> str:
    """An error as recorded (audit, dead letters): configured secret values masked."""
    return mask_text(str(exc), svc.secrets)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


async def _finish_step(
    svc: Services, progress_key: str, spec: StepSpec, result: Any, log: RunLog, last: bool
) -> None:
    """Record a finished step (so a re-run skips it) with the step records in one trip.
    The last step needs no record: the run's own end, written next, marks it done."""
    if last:
        return
    async with svc.redis.pipeline(transaction=True) as pipe:
        pipe.hset(progress_key, spec.key, json.dumps(result, default=str))
        pipe.expire(progress_key, max(1, int(svc.retention_s)))
        svc.audit.flush_into(pipe, log)
        await pipe.execute()


async def _run_step(
    svc: Services,
    payload: Mapping[str, Any],
    rule: Rule,
    spec: StepSpec,
    context: Mapping[str, Any],
    first_attempt: int,
) -> tuple[Any, Any, int]:
    """One step with its timeout and retry policy.

    Returns (redacted parameters, result, the attempt that succeeded). Raises
    ``StepError`` (with ``context['attempt']``) once retries are exhausted or the error is
    permanent, and ``Deferred`` when the next wait is too long to sleep here.
    """
    attempt = first_attempt
    shown: Any = None
    # The same on every attempt of this run (after a crash or a deferral too); a replay or
    # a dead-letter retry is a new request.
    idempotency_key = f"{payload['id']}:{rule.name}:{spec.index}{run_generation(payload)}"
    while True:
        step_ctx = StepContext(
            event_id=payload["id"],
            event=payload["event"],
            rule=rule.name,
            index=spec.index,
            attempt=attempt,
            api=svc.api,
            http=svc.http,
            targets=svc.rules.targets,
            data_dir=svc.data_dir,
            idempotency_key=idempotency_key,
        )
        try:
            params = spec.render(context)
            shown = redact(
                params.model_dump(mode="json", by_alias=True, exclude_none=True),
                secrets=svc.secrets,
            )
            async with asyncio.timeout(spec.timeout):
                return shown, await spec.step_type.run(step_ctx, params), attempt
        except TimeoutError:
            error: StepError = StepTimeout(f"{spec.label} timed out after {spec.timeout:g}s")
        except StepError as exc:
            error = exc
        except Exception as exc:  # a bug or a bad value in the step: not worth retrying
            error = StepError(f"{type(exc).__name__}: {exc}", retryable=False)
        error.context["attempt"] = attempt
        error.context["params"] = shown
        if not error.retryable or attempt >= spec.retry.attempts:
            raise error
        delay = max(spec.retry.delay(attempt), float(getattr(error, "retry_after", 0.0)))
        logger.info(
            "%s of %s failed (attempt %d/%d): %s; retrying in %.2fs",
            spec.label,
            rule.name,
            attempt,
            spec.retry.attempts,
            error,
            delay,
            extra={"event_id": payload["id"]},
        )
        if delay > MAX_INLINE_SLEEP_S:
            deferred = Deferred(f"{error}; next attempt in {delay:.0f}s", delay=delay)
            deferred.context["attempt"] = attempt
            raise deferred from error
        await asyncio.sleep(delay)
        attempt += 1
