"""Building the simulator application and running it on a port in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tashooks.serving import RunningServer, serve_app

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


class RunningSimulator(RunningServer):
    """A simulator serving on a real port (the ``/_sim`` controls live at ``root_url``);
    ``async with`` closes it."""

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


async def start_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> RunningSimulator:
    """Start the simulator in this event loop; ``await sim.close()`` when done."""
    app = create_simulator_app(config)
    runner, root_url = await serve_app(app, host, port, access_log=access_log)
    return RunningSimulator(app, runner, root_url)
