"""Running an event's rules again: replay an event, retry a dead letter.

Both queue an ordinary arq job (JSON, like ``Ingestor.store``) that the worker runs:

- replay: ``process_event`` with ``"replay": n`` (so the per-resource staleness check lets
  it through), job id ``<event id>:replay:<n>``, n counting the event's replays;
- retry: ``run_rule`` with ``(payload, rule, {})`` — the rule starts again at the step that
  failed, with its full attempts — job id ``<event id>:<rule>:retry:<n>``. A dead letter
  without a rule (the worker died repeatedly on the event) is retried as a replay.

A replay supersedes what is still queued of the event: its first job and earlier replays
that no worker has taken yet are dropped with the replay's queueing, and deferred or
retried runs of an earlier generation are skipped by the worker (``run_rule_job``).

The job, the queue entry, the dead letter's removal and the event's ``job`` field (so the
event shows as ``pending``) are written by one Lua script: a dead letter retried twice at
once is queued once, and never removed without its job being queued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from arq.jobs import serialize_job

from receiver import jobs
from receiver.auditlog import AuditLog
from receiver.deadletters import DeadLetters, run_key
from receiver.events import EventInvalid, parse_timestamp
from receiver.exceptions import NotFound, Superseded
from receiver.keys import Keys
from receiver.records import text

# KEYS: job, queue, event hash, dead letters, dead-letter index, dead-letter runs,
#       then per superseded job: its job key and its in-progress key
# ARGV: job bytes, score ms, job ttl ms, job id, dead-letter id ('' for none),
#       '1' to forget the event's earlier runs (a replay), the dead letter's run,
#       then the superseded jobs' ids
_ENQUEUE = """
if ARGV[5] ~= '' then
  if redis.call('HDEL', KEYS[4], ARGV[5]) == 0 then return 0 end
  redis.call('ZREM', KEYS[5], ARGV[5])
  if redis.call('HGET', KEYS[6], ARGV[7]) == ARGV[5] then redis.call('HDEL', KEYS[6], ARGV[7]) end
end
if ARGV[6] == '1' then
  for _, name in ipairs(redis.call('HKEYS', KEYS[3])) do
    if string.sub(name, 1, 4) == 'run:' then redis.call('HDEL', KEYS[3], name) end
  end
end
for i = 8, #ARGV do
  local k = 7 + (i - 8) * 2
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then  -- not taken by a worker yet
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('DEL', KEYS[k])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'job', ARGV[4]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """A job queued by a replay or a retry."""

    job_id: str
    event_id: str


def _ts_ms(raw: dict[str, Any]) -> int:
    try:
        return int(parse_timestamp(raw.get("timestamp")).timestamp() * 1000)
    except EventInvalid:
        return 0


class Requeue:
    """Queues replays and dead-letter retries."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, window_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.window_ms = int(window_s * 1000)
        self.audit = AuditLog(redis, keys)
        self.deadletters = DeadLetters(redis, keys)
        self._enqueue = redis.register_script(_ENQUEUE)

    async def _count(self, event_id: str, counter: str) -> int:
        """The next number of a replay or a retry of the event (its hash keeps counting)."""
        key = self.keys.event(event_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, counter, 1)
            pipe.pexpire(key, self.window_ms, nx=True)
            n, _ = await pipe.execute()
        return int(n)

    async def _queue(
        self,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        event_id: str,
        *,
        deadletter: str = "",
        run: str = "",
        forget_runs: bool = False,
        supersedes: tuple[str, ...] = (),
    ) -> bool:
        now_ms = int(time.time() * 1000)
        job = serialize_job(function, args, {}, None, now_ms, serializer=jobs.serialize)
        done = await self._enqueue(
            keys=[
                self.keys.job(job_id),
                self.keys.queue,
                self.keys.event(event_id),
                self.keys.deadletters,
                self.keys.deadletter_index,
                self.keys.deadletter_runs,
                *[
                    k
                    for old in supersedes
                    for k in (self.keys.job(old), self.keys.in_progress(old))
                ],
            ],
            args=[
                job,
                now_ms,
                self.window_ms,
                job_id,
                deadletter,
                "1" if forget_runs else "0",
                run,
                *supersedes,
            ],
        )
        return bool(done)

    async def _replay(
        self, event_id: str, raw: dict[str, Any], received_ms: int, deadletter: str = ""
    ) -> Queued | None:
        """Queue the event's rules again; with ``deadletter``, only if that dead letter (of
        the event's start) is still there, and remove it."""
        n = await self._count(event_id, "replays")
        job_id = f"{event_id}:replay:{n}"
        payload = jobs.event_payload(event_id, raw, received_ms, _ts_ms(raw), replay=n)
        queued = await self._queue(
            job_id,
            jobs.PROCESS_EVENT,
            (payload,),
            event_id,
            deadletter=deadletter,
            run=run_key(event_id, None),
            forget_runs=True,
            # The first job and the earlier replays, when they still wait in the queue.
            supersedes=(event_id, *(f"{event_id}:replay:{k}" for k in range(1, n))),
        )
        return Queued(job_id, event_id) if queued else None

    async def replay(self, event_id: str) -> Queued:
        """Run the event's rules again, as if it had just arrived (staleness aside). Its
        earlier runs stay in the audit stream; the event's status follows the replay. Its
        dead letters go: the replay runs their rules again (and a rule that fails again
        leaves a new one), so a later retry of every dead letter cannot repeat them.

        Raises ``NotFound`` when the event is not kept any more (or never was).
        """
        found = await self.audit.event_raw(event_id)
        if found is None:
            raise NotFound("event", event_id)
        raw, received_ms = found
        # Read before the replay is queued: a failure of the replay itself (which may come
        # at once) leaves a new dead letter that must stay.
        earlier = await self.deadletters.of_event(event_id)
        queued = await self._replay(event_id, raw, received_ms)
        if queued is None:  # cannot happen without a dead letter; keeps the types honest
            raise NotFound("event", event_id)
        for dl_id in earlier:
            await self.deadletters.remove(dl_id)
        return queued

    async def retry(self, deadletter_id: str) -> Queued:
        """Run a dead letter's rule again from the step that failed, and remove the dead
        letter. Raises ``NotFound`` when there is no such dead letter (any more)."""
        record = await self.deadletters.get(deadletter_id)
        if record is None:
            raise NotFound("dead letter", deadletter_id)
        event_id = str(record["event_id"])
        raw: dict[str, Any] = record["event"]
        replays_raw, received_raw = await self.redis.hmget(  # type: ignore[misc]
            self.keys.event(event_id), ["replays", "received_ms"]
        )
        replays = int(replays_raw or 0)
        if int(record.get("replay") or 0) < replays:
            await self.deadletters.remove(deadletter_id)
            raise Superseded(deadletter_id, event_id, replays)
        received_ms = int(text(received_raw) or record.get("failed_at_ms") or 0)
        rule = record.get("rule")
        if rule is None:
            queued = await self._replay(event_id, raw, received_ms, deadletter=deadletter_id)
        else:
            n = await self._count(event_id, "retries")
            job_id = f"{event_id}:{rule}:retry:{n}"
            # Of the event's current generation, and a new request to the platform (its own
            # Idempotency-Key).
            payload = jobs.event_payload(
                event_id, raw, received_ms, _ts_ms(raw), replay=replays, retry=n
            )
            done = await self._queue(
                job_id,
                jobs.RUN_RULE,
                (payload, rule, {}),
                event_id,
                deadletter=deadletter_id,
                run=run_key(event_id, rule),
            )
            queued = Queued(job_id, event_id) if done else None
        if queued is None:
            raise NotFound("dead letter", deadletter_id)
        return queued
