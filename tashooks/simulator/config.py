"""Settings of the local tasmanian.cloud simulator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated platform behaves.

    Delays are short by default so tests and the demo see a VPS boot or a cluster become
    ready within a second, as the real platform would within minutes.
    """

    api_key: str
    #: Seconds a VPS stays ``provisioning``/``starting``/``rebooting``/``rebuilding`` (and a
    #: template deployment stays ``deploying``) before it is ``running``.
    boot_delay: float = 0.3
    #: Seconds from cluster creation to ``kubernetes.ready``.
    ready_delay: float = 0.5
    #: Token bucket: sustained requests per minute (0 turns rate limiting off) and burst size.
    rate_limit: int = 300
    burst: int = 50
    #: Webhook deliveries: per-attempt timeout, attempts in all, first backoff (doubling)
    #: and the longest wait between attempts (also caps a receiver's ``Retry-After``).
    delivery_timeout: float = 5.0
    delivery_attempts: int = 3
    delivery_backoff: float = 0.1
    delivery_backoff_max: float = 2.0
    #: A second key that may only read: writes with it answer 403 ``forbidden``.
    readonly_api_key: str | None = None
    #: Region reported by resources and used in generated endpoints.
    region: str = "tas-1"

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("SimulatorConfig.api_key must not be empty")
        if self.delivery_attempts < 1:
            raise ValueError("SimulatorConfig.delivery_attempts must be at least 1")
        if self.burst < 1 or self.rate_limit < 0:
            raise ValueError("SimulatorConfig.burst must be >= 1 and rate_limit >= 0")
        for name in ("boot_delay", "ready_delay", "delivery_backoff", "delivery_backoff_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimulatorConfig.{name} must not be negative")
        if self.delivery_timeout <= 0:
            raise ValueError("SimulatorConfig.delivery_timeout must be positive")
