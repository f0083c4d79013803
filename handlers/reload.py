"""Reloading the rules file on SIGHUP or when it changes, keeping the last good rules.

A file that does not validate is refused: its problems are logged and recorded in the
audit stream, and the rules already running stay in force. The version (a hash of the
file) of what runs is published in Redis for ``/readyz``, and recorded on every load.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from handlers.audit import Audit
from handlers.exceptions import RulesError
from handlers.rules import RuleSet, load_rules
from receiver.keys import Keys

logger = logging.getLogger("tashooks.rules")
WATCH_INTERVAL_S = 1.0


async def publish(
    redis: aioredis.Redis, keys: Keys, rules: RuleSet, audit: Audit, reason: str
) -> None:
    """Announce the running rules' version (``/readyz``, audit stream)."""
    await redis.set(keys.rules_version, rules.version_hash)
    await audit.record(
        "rules",
        status="loaded",
        version=rules.version_hash,
        reason=reason,
        rules=str(len(rules.rules)),
        path=str(rules.path),
    )


class RulesReloader:
    """Loads ``path`` again on request or change; ``apply`` swaps in good rules."""

    def __init__(
        self,
        path: Path,
        current: RuleSet,
        apply: Callable[[RuleSet], None],
        redis: aioredis.Redis,
        keys: Keys,
        audit: Audit,
    ) -> None:
        self.path = path
        self.current = current
        self.apply = apply
        self.redis = redis
        self.keys = keys
        self.audit = audit
        self._lock = asyncio.Lock()
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def reload(self, reason: str) -> bool:
        """Load the file again; True when new rules now run."""
        async with self._lock:
            self._stamp = self._file_stamp()
            try:
                rules = await asyncio.to_thread(load_rules, self.path)
            except RulesError as exc:
                for problem in exc.problems:
                    logger.error("%s", problem)
                logger.error(
                    "rules reload (%s) refused: %d problem(s); still running version %s",
                    reason,
                    len(exc.problems),
                    self.current.version_hash,
                )
                await self._record_refusal(reason, exc)
                return False
            if rules.digest == self.current.digest:
                logger.info("rules reload (%s): unchanged (version %s)", reason, rules.version_hash)
                return False
            self.apply(rules)
            previous, self.current = self.current, rules
            logger.info(
                "rules reloaded (%s): version %s -> %s, %d rules",
                reason,
                previous.version_hash,
                rules.version_hash,
                len(rules.rules),
            )
            try:
                await publish(self.redis, self.keys, rules, self.audit, reason)
            except RedisError as exc:
                logger.warning("could not record the rules version: %s", exc)
            return True

    async def _record_refusal(self, reason: str, exc: RulesError) -> None:
        try:
            await self.audit.record(
                "rules",
                status="refused",
                reason=reason,
                version=self.current.version_hash,
                errors=[str(p) for p in exc.problems][:20],
            )
        except RedisError as err:
            logger.warning("could not record the refused reload: %s", err)

    async def watch(self, interval: float = WATCH_INTERVAL_S) -> None:
        """Reload whenever the file's modification time or size changes (runs until
        cancelled)."""
        while True:
            await asyncio.sleep(interval)
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                await self.reload("file changed")
