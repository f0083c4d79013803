"""Typed keys for what the simulator keeps on its ``web.Application``."""

from __future__ import annotations

from aiohttp import web

from .background import Background
from .config import SimulatorConfig
from .ratelimit import TokenBucket
from .state import RequestRecord, SimulatorState
from .webhooks import Dispatcher

CONFIG = web.AppKey("tashooks.simulator.config", SimulatorConfig)
STATE = web.AppKey("tashooks.simulator.state", SimulatorState)
BACKGROUND = web.AppKey("tashooks.simulator.background", Background)
DISPATCHER = web.AppKey("tashooks.simulator.dispatcher", Dispatcher)
BUCKET = web.AppKey("tashooks.simulator.bucket", TokenBucket)

#: The log entry of the request being served (set by the observing middleware).
RECORD = web.RequestKey("tashooks.simulator.record", RequestRecord)
