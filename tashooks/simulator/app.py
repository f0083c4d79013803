"""Building the simulator application and running it on a port in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from aiohttp import web

from .background import Background
from .config import SimulatorConfig
from .keys import BACKGROUND, BUCKET, CONFIG, DISPATCHER, STATE
from .middleware import API_PREFIX, MIDDLEWARES
from .ratelimit import TokenBucket
from .routes import setup_routes
from .state import SimulatorState
from .webhooks import Dispatcher


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    # The delivery session needs the running loop, so it opens here, not in create_*.
    await app[DISPATCHER].open()
    yield
    # Tasks first: a delivery in flight still uses the session.
    await app[BACKGROUND].close()
    await app[DISPATCHER].close()


def create_simulator_app(config: SimulatorConfig) -> web.Application:
    """A local tasmanian.cloud API under ``/v1`` plus ``/_sim`` test controls."""
    app = web.Application(middlewares=MIDDLEWARES)
    state = SimulatorState()
    background = Background()
    app[CONFIG] = config
    app[STATE] = state
    app[BACKGROUND] = background
    app[DISPATCHER] = Dispatcher(config, state, background)
    app[BUCKET] = TokenBucket(config.rate_limit, config.burst)
    setup_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


class RunningSimulator:
    """A simulator serving on a real port; ``async with`` closes it."""

    def __init__(self, app: web.Application, runner: web.AppRunner, root_url: str) -> None:
        self.app = app
        self.runner = runner
        #: ``http://host:port`` (the ``/_sim`` controls live here).
        self.root_url = root_url
        self._closed = False

    @property
    def url(self) -> str:
        """The API base URL, ``http://host:port/v1`` (what ``TASHOOKS_API_URL`` wants)."""
        return self.root_url + API_PREFIX

    @property
    def state(self) -> SimulatorState:
        return self.app[STATE]

    @property
    def config(self) -> SimulatorConfig:
        return self.app[CONFIG]

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` for the API, ready to pass to a client."""
        return {"Authorization": f"Bearer {self.config.api_key}"}

    async def wait_idle(self, max_wait: float = 10.0) -> None:
        """Wait until no transition or webhook delivery is pending (``TimeoutError``)."""
        await self.app[BACKGROUND].wait_idle(max_wait)

    async def close(self) -> None:
        """Stop serving, cancel background work, close the delivery session (idempotent)."""
        if not self._closed:
            self._closed = True
            await self.runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


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


async def start_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> RunningSimulator:
    """Start the simulator in this event loop; ``await sim.close()`` when done."""
    app = create_simulator_app(config)
    runner, root_url = await serve_app(app, host, port, access_log=access_log)
    return RunningSimulator(app, runner, root_url)
