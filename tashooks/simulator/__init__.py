"""A local tasmanian.cloud: the ``/v1`` API in memory, signed webhooks, fault injection.

For development (``tashooks simulate``, ``tashooks demo``) and for tests, which run it
in-process with :func:`start_simulator` and talk to it over loopback HTTP.
"""

from __future__ import annotations

from .app import RunningSimulator, create_simulator_app, start_simulator
from .config import SimulatorConfig
from .faults import Fault
from .state import DeliveryRecord, RequestRecord, SimulatorState
from .webhooks import signature

__all__ = [
    "DeliveryRecord",
    "Fault",
    "RequestRecord",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorState",
    "create_simulator_app",
    "signature",
    "start_simulator",
]
