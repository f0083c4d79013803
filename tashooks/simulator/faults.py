"""Injected faults: make the next matching requests fail, hang or lose their connection."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .ids import new_id


@dataclass(slots=True)
class Fault:
    """One armed fault.

    ``path`` is a shell-style glob over the request path (``*`` also crosses ``/``), so
    ``/v1/kubernetes/*`` covers ``/v1/kubernetes/k8s_1/kubeconfig``. ``method`` ``None``
    or ``"*"`` matches every method. ``count`` ``None`` means until cleared.
    After ``delay`` seconds the request answers ``status`` (platform error format, plus
    ``headers``); with ``reset`` its connection is dropped with a TCP RST instead; with
    neither it is served normally (a slow answer). ``after`` runs the request first, so
    the platform acts but the client never learns of it (the case idempotency keys exist
    for).
    """

    path: str
    method: str | None = None
    status: int | None = None
    count: int | None = 1
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    after: bool = False
    id: str = field(default_factory=lambda: new_id("flt"))
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is covered (regardless of the remaining count)."""
        if self.method not in (None, "*") and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "count": self.count,
            "remaining": None if self.count is None else max(self.count - self.hits, 0),
            "delay": self.delay,
            "headers": dict(self.headers),
            "reset": self.reset,
            "after": self.after,
            "hits": self.hits,
        }


class FaultSet:
    """The armed faults, first armed first served."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, counting it as used; spent faults are dropped."""
        for fault in self._faults:
            if fault.matches(method, path) and not fault.exhausted:
                fault.hits += 1
                if fault.exhausted:
                    self._faults.remove(fault)
                return fault
        return None

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)
