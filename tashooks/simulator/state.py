"""Everything the simulator remembers: resources, request log, faults, deliveries."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .faults import Fault, FaultSet
from .ids import new_id, rfc3339_now
from .models import Bucket, Cluster, Deployment, Network, Vps, Webhook

#: Request headers copied into the request log.
LOGGED_HEADERS = ("Idempotency-Key", "Content-Type", "User-Agent", "Accept")


@dataclass(slots=True)
class RequestRecord:
    """One API request as received; ``status`` is None when the connection was reset."""

    method: str
    path: str
    pattern: str
    query: dict[str, str]
    headers: dict[str, str]
    time: float
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "pattern": self.pattern,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "time": self.time,
            "status": self.status,
        }


@dataclass(slots=True)
class DeliveryRecord:
    """One attempt to deliver one event to one webhook registration."""

    delivery_id: str
    webhook_id: str
    url: str
    event: str
    attempt: int
    body: bytes
    signature: str
    time: float
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer: the receiver took it."""
        return self.status is not None and 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "webhook_id": self.webhook_id,
            "url": self.url,
            "event": self.event,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "ok": self.ok,
            "time": self.time,
        }


@dataclass(slots=True)
class CachedResponse:
    """The first answer to an ``Idempotency-Key``, replayed to repeats."""

    status: int
    body: bytes
    content_type: str | None


@dataclass
class SimulatorState:
    """The platform's memory. Tests read it directly and arm faults through it."""

    vps: dict[str, Vps] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    buckets: dict[str, Bucket] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    #: Every API request (not ``/_sim``), oldest first.
    requests: list[RequestRecord] = field(default_factory=list)
    #: Requests per ``(method, route pattern)``, e.g. ``("GET", "/v1/vps/{id}")``.
    call_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    faults: FaultSet = field(default_factory=FaultSet)
    idempotency: dict[tuple[str, str, str], CachedResponse] = field(default_factory=dict)
    idempotency_locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)

    def add_webhook(
        self, url: str, events: list[str] | None = None, secret: str | None = None
    ) -> Webhook:
        """Register a webhook (what ``POST /v1/webhooks`` does, minus validation).

        No ``events`` means all of them, including types the platform adds later; no
        ``secret`` means a fresh random one.
        """
        hook = Webhook(
            id=new_id("whk"),
            url=url,
            events=list(events or ["*"]),
            secret=secret or secrets.token_urlsafe(32),
            created_at=rfc3339_now(),
        )
        self.webhooks[hook.id] = hook
        return hook

    def add_fault(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int | None = None,
        count: int | None = 1,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        reset: bool = False,
        after: bool = False,
    ) -> Fault:
        """Arm a fault (see :class:`Fault`); returns it so its ``hits`` can be watched."""
        return self.faults.add(
            Fault(
                path=path,
                method=method,
                status=status,
                count=count,
                delay=delay,
                headers=dict(headers or {}),
                reset=reset,
                after=after,
            )
        )

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self.faults.clear()

    def calls(self, method: str, pattern: str) -> int:
        """How often ``method pattern`` was requested, e.g. ``calls("POST", "/v1/vps")``."""
        return self.call_counts[(method.upper(), pattern)]

    def clear_requests(self) -> None:
        """Forget the request log and the counters."""
        self.requests.clear()
        self.call_counts.clear()

    def deliveries_for(self, event: str | None = None) -> list[DeliveryRecord]:
        """Delivery attempts, optionally only those of one event type."""
        return [d for d in self.deliveries if event is None or d.event == event]

    def record_request(
        self, method: str, path: str, pattern: str, query: dict[str, str], headers: Any
    ) -> RequestRecord:
        """Log a request and count it."""
        record = RequestRecord(
            method=method,
            path=path,
            pattern=pattern,
            query=query,
            headers={h: headers[h] for h in LOGGED_HEADERS if h in headers},
            time=time.time(),
        )
        self.requests.append(record)
        self.call_counts[(method, pattern)] += 1
        return record
