"""Dry runs for the dashboard (``POST /dry-run``) in a process that runs a worker too.

The receiver never imports the worker's code, so it cannot dry-run by itself: it calls the
hook ``receiver.ui.DRY_RUN``, which ``enable_dry_run`` sets here, where both sides may be
imported (``tashooks serve``; a receiver alone answers 501).

No environment value reaches the browser: the rules file the worker runs is loaded again
with every ``${NAME}`` read as the placeholder ``<NAME>`` (as ``tashooks test-rules`` does
for unset variables), so webhook URLs, tokens and keys from the environment are never in a
dry run's answer. That load is kept until the file changes. A condition that compares with
a ``${NAME}`` therefore compares with ``<NAME>``; the answer lists those names.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from arq.worker import Worker

from handlers.dryrun import dry_run
from handlers.rules import check_rules
from handlers.ruleset import RuleSet
from handlers.yamlload import PlaceholderEnv
from receiver.ui import DRY_RUN, DryRunHook, DryRunRefused


@dataclass(frozen=True, slots=True)
class _Loaded:
    ruleset: RuleSet
    placeholders: tuple[str, ...]


class DashboardDryRun:
    """The ``DRY_RUN`` hook: the dry run of an event against the running rules' file."""

    def __init__(self, running: Callable[[], RuleSet]) -> None:
        self.running = running
        self._loaded: _Loaded | None = None

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._dry_run, self.running(), event)

    def _load(self, path: Path) -> _Loaded:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise DryRunRefused(
                f"cannot read the rules file {path}: {exc.strerror or exc}"
            ) from None
        loaded = self._loaded
        if loaded is not None and loaded.ruleset.path == path and loaded.ruleset.digest == digest:
            return loaded
        env = PlaceholderEnv({})
        ruleset, problems = check_rules(path, env)
        if ruleset is None:
            errors = [p for p in problems if not p.warning]
            first = f"; first: {errors[0]}" if errors else ""
            raise DryRunRefused(
                f"{path} does not validate ({len(errors)} errors{first}); the worker keeps "
                f"running the last good rules. See `tashooks check {path}`"
            )
        self._loaded = loaded = _Loaded(ruleset, tuple(env.unset))
        return loaded

    def _dry_run(self, running: RuleSet, event: dict[str, Any]) -> dict[str, Any]:
        loaded = self._load(running.path)
        shown = loaded.ruleset.version_hash
        doc: dict[str, Any] = {
            **dry_run(loaded.ruleset, event).to_json(),
            "rules_file": str(running.path),
            "rules_version": shown,
            "running_version": running.version_hash,
            "placeholders": list(loaded.placeholders),
        }
        if shown != running.version_hash:
            doc["note"] = (
                f"the rules file (version {shown}) is not the one the worker runs "
                f"(version {running.version_hash}); the dry run shows the file"
            )
        return doc


def enable_dry_run(app: web.Application, worker: Worker | None) -> None:
    """Let ``app``'s dashboard dry-run events against ``worker``'s rules (reloads included);
    nothing when there is no worker in this process."""
    if worker is None:
        return
    hook: DryRunHook = DashboardDryRun(lambda: worker.ctx["rules"])
    app[DRY_RUN] = hook
