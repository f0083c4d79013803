"""Serving an aiohttp app (the daemon's, the simulator, the Slack stand-in) on a real port."""

from __future__ import annotations

import errno
import os
import socket
from types import TracebackType
from typing import Any, Self

from aiohttp import web


class ListenError(Exception):
    """A server could not listen on ``host:port`` (a busy port, a host that does not
    resolve or is not this machine's): not a Redis problem, a setting to change."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {error}")
        self.host = host
        self.port = port
        self.error = error

    def advice(self, host_name: str, port_name: str) -> str:
        """What went wrong and what to do, naming the setting (``TASHOOKS_PORT``, ``--port``
        …) the user changes."""
        host, port, error = self.host, self.port, self.error
        # aiohttp's errors carry their own long text as strerror; errno's is the short one.
        reason = os.strerror(error.errno) if error.errno and error.errno > 0 else str(error)
        if isinstance(error, socket.gaierror):
            return (
                f"{host_name}: cannot resolve {host!r} ({error.strerror}); set {host_name} to an "
                "address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
            )
        if error.errno == errno.EADDRINUSE:
            return (
                f"{port_name}: port {port} on {host} is in use by another process; "
                f"stop it or set {port_name}"
            )
        if error.errno == errno.EADDRNOTAVAIL:
            return (
                f"{host_name}: {host} is not an address of this machine ({reason}); set "
                f"{host_name} to one of its addresses, e.g. 127.0.0.1 or 0.0.0.0"
            )
        if error.errno == errno.EACCES:
            return (
                f"{port_name}: not allowed to listen on port {port} ({reason}); ports below "
                f"1024 need privileges: set {port_name} to 1024 or above"
            )
        return f"{host_name}/{port_name}: cannot listen on {host}:{port} ({error})"


async def start_site(runner: web.AppRunner, host: str, port: int) -> None:
    """Listen on ``host:port`` with ``runner`` (set up); ``ListenError`` when it cannot."""
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise ListenError(host, port, exc) from exc


async def serve_app(
    app: web.Application, host: str, port: int, *, access_log: bool
) -> tuple[web.AppRunner, str]:
    """Run ``app`` on ``host:port`` (0 picks a free port); returns the runner and root URL."""
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    # A short shutdown_timeout: a test's injected 30 s delay must not hold up close().
    runner = web.AppRunner(app, shutdown_timeout=0.5, **kwargs)
    await runner.setup()
    try:
        await start_site(runner, host, port)
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
