"""``tashooks events``, ``replay`` and ``dlq``: the audit log and dead letters from a shell.

They talk to Redis directly (``TASHOOKS_REDIS_URL``, ``TASHOOKS_NAMESPACE``) through the
same receiver modules as the admin API, so they need no admin token. Output is JSON Lines
where it is data, one short sentence where it is an action; errors say what to do next.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiver.auditlog import AuditLog
from receiver.connection import connect, storage_trouble
from receiver.deadletters import DeadLetters
from receiver.durations import format_duration
from receiver.exceptions import InvalidQuery, NotFound, Superseded
from receiver.keys import Keys
from receiver.query import MAX_LIMIT, STREAM_START, EventQuery, parse_time
from receiver.requeue import Requeue
from receiver.settings import Settings, SettingsError, load_settings, redact_redis_url
from receiver.tail import Tail

EXIT_USAGE = 2
# Longest wait of one read: how soon Ctrl-C is noticed (and below the 5 s socket timeout).
FOLLOW_BLOCK_MS = 500
# Events listed when --limit is not given.
DEFAULT_LIMIT = 50
# Between two tries while Redis does not answer (--follow).
FOLLOW_RETRY_S = 2.0
MAX_SEQ = 2**64 - 1


class _Failed(Exception):
    """A command failed with a message for the user (printed to stderr, exit ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False, default=str), flush=True)


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = connect(settings.redis_url, max_connections=2)
    try:
        yield client
    finally:
        await client.aclose()


def _run(name: str, body: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
    """Run one command: settings, errors to messages and exit codes, Ctrl-C and closed
    pipes ending quietly."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tashooks {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(body(settings))
    except _Failed as exc:
        print(f"tashooks {name}: {exc}", file=sys.stderr)
        return exc.code
    except InvalidQuery as exc:
        print(f"tashooks {name}: --{exc.field}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except (RedisError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return 0
        url = redact_redis_url(settings.redis_url)
        if not storage_trouble(exc):  # Redis answered: it refused a command
            print(
                f"tashooks {name}: Redis at {url} refused a command ({exc}); if another "
                "application writes keys under TASHOOKS_NAMESPACE, give tashooks a namespace "
                "of its own, else please report it as a bug",
                file=sys.stderr,
            )
            return 1
        print(
            f"tashooks {name}: Redis at {url} is unreachable or cannot serve now ({exc}); "
            "check that it runs and TASHOOKS_REDIS_URL",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0


def _not_found(exc: NotFound, settings: Settings) -> _Failed:
    if isinstance(exc, Superseded):
        return _Failed(str(exc))
    if exc.kind == "event":
        window = format_duration(settings.dedup_window)
        return _Failed(f"no event {exc.id} in the last {window}; see `tashooks events`")
    return _Failed(f"no {exc.kind} {exc.id}; see `tashooks dlq list`")


# -- events ----------------------------------------------------------------------------


async def _list_events(settings: Settings, args: argparse.Namespace) -> int:
    wanted = args.limit
    query = EventQuery.parse(
        type=args.type,
        resource=args.resource,
        status=args.status,
        since=args.since,
        until=args.until,
        limit=min(wanted, MAX_LIMIT),
    )
    async with _redis(settings) as redis:
        log = AuditLog(redis, Keys(settings.namespace))
        while wanted > 0:
            page = await log.list_events(query)
            for item in page.data[:wanted]:
                _emit(item)
            wanted -= len(page.data)
            if page.next_cursor is None:
                break
            query = replace(query, limit=min(wanted, MAX_LIMIT), cursor=page.next_cursor)
    return 0


async def _follow(settings: Settings, args: argparse.Namespace) -> int:
    after = None
    if args.since:
        since_ms = parse_time(args.since, "since")
        after = f"{since_ms - 1}-{MAX_SEQ}" if since_ms > 0 else STREAM_START
    # Ctrl-C (or SIGTERM) ends the loop between two reads: a clean exit 0, nothing cut
    # off in the middle of a line.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _redis(settings) as redis:
            tail = Tail(
                redis,
                Keys(settings.namespace),
                after=after,
                type_glob=args.type,
                resource=args.resource,
            )
            await tail.start()
            down = False  # Redis did not answer the last read
            while not stop.is_set():
                try:
                    records = await tail.read(block_ms=FOLLOW_BLOCK_MS)
                except (RedisError, OSError) as exc:
                    if isinstance(exc, BrokenPipeError):
                        raise
                    if not down:  # once per outage; it goes on from its last record
                        print(
                            f"tashooks events: Redis is unavailable ({exc}); retrying every "
                            f"{FOLLOW_RETRY_S:g} s, Ctrl-C stops",
                            file=sys.stderr,
                            flush=True,
                        )
                    down = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), FOLLOW_RETRY_S)
                    continue
                if down:
                    down = False
                    print("tashooks events: Redis is back", file=sys.stderr, flush=True)
                for record in records:
                    _emit(record)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """``tashooks events``: list events (newest first) or follow the audit stream."""
    if args.follow:
        for option in ("status", "until", "limit"):
            if getattr(args, option) is not None:
                print(
                    f"tashooks events: --{option} cannot be used with --follow, which shows "
                    "audit records as they happen; drop one of them",
                    file=sys.stderr,
                )
                return EXIT_USAGE
        return _run("events", lambda s: _follow(s, args))
    if args.limit is None:
        args.limit = DEFAULT_LIMIT
    if args.limit < 1:
        print("tashooks events: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    return _run("events", lambda s: _list_events(s, args))


# -- replay ----------------------------------------------------------------------------


async def _replay(settings: Settings, event_id: str) -> int:
    async with _redis(settings) as redis:
        requeue = Requeue(redis, Keys(settings.namespace), settings.dedup_window)
        try:
            queued = await requeue.replay(event_id)
        except NotFound as exc:
            raise _not_found(exc, settings) from None
    print(f"{event_id}: replay queued as job {queued.job_id}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """``tashooks replay ID``: run an event's rules again."""
    return _run("replay", lambda s: _replay(s, args.id))


# -- dlq -------------------------------------------------------------------------------


async def _dlq_list(settings: Settings, limit: int | None) -> int:
    async with _redis(settings) as redis:
        store = DeadLetters(redis, Keys(settings.namespace))
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            size = MAX_LIMIT if left is None else min(left, MAX_LIMIT)
            records, cursor = await store.page(size, cursor)
            for record in records:
                _emit(record)
            if left is not None:
                left -= len(records)
            if cursor is None:
                break
    return 0


async def _dlq_retry(settings: Settings, dl_id: str | None) -> int:
    async with _redis(settings) as redis:
        keys = Keys(settings.namespace)
        requeue = Requeue(redis, keys, settings.dedup_window)
        if dl_id is not None:
            try:
                queued = await requeue.retry(dl_id)
            except NotFound as exc:
                raise _not_found(exc, settings) from None
            print(f"{dl_id}: retry of {queued.event_id} queued as job {queued.job_id}")
            return 0
        # Oldest first: the order in which they failed.
        ids = [i.decode() for i in await redis.zrange(keys.deadletter_index, 0, -1)]
        retried = 0
        for one in ids:
            try:
                queued = await requeue.retry(one)
            except Superseded as exc:
                print(f"{one}: {exc}")
                continue
            except NotFound:
                continue  # retried or deleted by someone else meanwhile
            retried += 1
            print(f"{one}: retry of {queued.event_id} queued as job {queued.job_id}")
        print(f"{retried} dead letter(s) queued for retry")
    return 0


async def _dlq_purge(settings: Settings, yes: bool) -> int:
    async with _redis(settings) as redis:
        store = DeadLetters(redis, Keys(settings.namespace))
        size = await store.size()
        if size == 0:
            print("no dead letters")
            return 0
        if not yes:
            if not sys.stdin.isatty():
                raise _Failed(
                    f"this deletes {size} dead letter(s) for good; run again with --yes "
                    "(or look first: tashooks dlq list)"
                )
            answer = await asyncio.to_thread(
                input, f"delete {size} dead letter(s) for good? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        removed = await store.purge()
    print(f"deleted {removed} dead letter(s)")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """``tashooks dlq list|retry|purge``."""
    if args.action == "list":
        if args.limit is not None and args.limit < 1:
            print("tashooks dlq list: --limit must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        return _run("dlq list", lambda s: _dlq_list(s, args.limit))
    if args.action == "retry":
        if (args.id is None) == (not args.all):
            print("tashooks dlq retry: give a dead-letter ID or --all", file=sys.stderr)
            return EXIT_USAGE
        return _run("dlq retry", lambda s: _dlq_retry(s, args.id))
    return _run("dlq purge", lambda s: _dlq_purge(s, args.yes))


def add_admin_commands(sub: Any) -> None:
    """Add ``events``, ``replay`` and ``dlq`` to the ``tashooks`` subcommands."""
    p = sub.add_parser("events", help="list events, or follow the audit stream (JSON Lines)")
    p.add_argument("-f", "--follow", action="store_true", help="print audit records live")
    p.add_argument("--type", help="event type or glob, e.g. 'vps.*'")
    p.add_argument("--resource", help="resource id (data.id)")
    p.add_argument(
        "--status",
        help="comma-separated: accepted, duplicate, rejected, pending, ok, failed, deferred, "
        "throttled, stale, no_match",
    )
    p.add_argument("--since", help="RFC 3339 time or a duration ago, e.g. 1h")
    p.add_argument("--until", help="RFC 3339 time or a duration ago")
    p.add_argument("--limit", type=int, help=f"at most this many events ({DEFAULT_LIMIT})")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("replay", help="run an event's rules again")
    p.add_argument("id", help="event id (evt_...)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("dlq", help="dead letters: list, retry, purge")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="dead letters, newest first (JSON Lines)")
    a.add_argument("--limit", type=int, help="at most this many")
    a = actions.add_parser("retry", help="run a dead letter's rule again and remove it")
    a.add_argument("id", nargs="?", help="dead-letter id (dl_...)")
    a.add_argument("--all", action="store_true", help="retry every dead letter")
    a = actions.add_parser("purge", help="delete every dead letter")
    a.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_dlq)
