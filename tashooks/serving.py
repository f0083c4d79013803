"""Serving a local aiohttp app (the simulator, the Slack stand-in) on a real port."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from aiohttp import web


async def serve_app(
    app: web.Application, host: str, port: int, *, access_log: bool
) -> tuple[web.AppRunner, str]:
    """Run ``app`` on ``host:port`` (0 picks a free port); returns the runner and root URL."""
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    # A short shutdown_timeout: a test's injected 30 s delay must not hold up close().
    runner = web.AppRunner(app, shutdown_timeout=0.5, **kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - only a label
    if ":" in shown:
        shown = f"[{shown}]"
    return runner, f"http://{shown}:{bound_port}"


class RunningServer:
    """An app serving on a real port; ``close()`` (or ``async with``) stops it."""

    def __init__(self, app: web.Application, runner: web.AppRunner, root_url: str) -> None:
        self.app = app
        self.runner = runner
        #: ``http://host:port``
        self.root_url = root_url
        self._closed = False

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if not self._closed:
            self._closed = True
            await self.runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
