"""Tracked background tasks: state transitions and webhook deliveries outlive the request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    """Starts tasks, keeps references to them and cancels them all on ``close``.

    Holding the references matters: the event loop keeps only weak ones, and cancelling
    on shutdown is what keeps "Task was destroyed but it is pending" away.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """Run ``coro`` in the background (dropped silently once closed)."""
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def later(
        self, delay: float, action: Callable[[], Awaitable[None]], *, name: str | None = None
    ) -> None:
        """Run ``action()`` after ``delay`` seconds."""

        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        self.spawn(run(), name=name)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # Retrieving the exception here also stops asyncio's "never retrieved" complaint.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator background task %s failed", task.get_name(), exc_info=exc)

    @property
    def pending(self) -> int:
        """Tasks still running."""
        return len(self._tasks)

    async def wait_idle(self, max_wait: float = 10.0) -> None:
        """Wait until no task runs, including ones started meanwhile (a VPS booting
        emits an event whose deliveries start new tasks). Raises ``TimeoutError``."""
        async with asyncio.timeout(max_wait):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Cancel everything and wait for it to finish."""
        self._closed = True
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
