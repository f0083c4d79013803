"""What every step type provides, and what it is given when it runs.

A step type is a module in ``handlers/steps/`` with one ``StepType`` instance, listed in
``handlers/steps/__init__.py``'s ``REGISTRY``. Adding a step type is one new module and
one registry line.

Its ``params`` model validates the step's parameters twice: as written in rules.yaml when
the file loads (string values are still template source then), and after rendering, just
before ``run``. Keep fields that may hold templates typed as ``str``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from handlers.transforms import Transform

if TYPE_CHECKING:
    import httpx

    from handlers.client import ApiClient


class Params(BaseModel):
    """Base of step parameter models: unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass(frozen=True, slots=True)
class Target:
    """A named destination from the rules file's ``targets:``."""

    name: str
    type: str  # "slack" or "http"
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_private: bool = False


@dataclass(slots=True)
class StepContext:
    """What a running step may use. Built by the runner for each attempt."""

    event_id: str
    event: Mapping[str, Any]
    rule: str
    index: int
    attempt: int
    api: ApiClient
    http: httpx.AsyncClient
    targets: Mapping[str, Target]
    data_dir: Path
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class StepType:
    """A kind of step: its parameter model and its coroutine."""

    name: str
    params: type[Params]
    run: Callable[[StepContext, Any], Awaitable[Any]]
    # Parameter -> what is done to each ``{{ }}`` output in it (and in everything nested
    # inside it), never to the rule's own text: ``encode_segment`` (one URL path segment,
    # one file name), ``escape_slack`` (no mentions or links from event data).
    transforms: Mapping[str, Transform] = field(default_factory=dict)
    # Parameters that are never templates (names of targets, methods, modes...).
    literal: frozenset[str] = frozenset()
    # Parameters naming a target in ``targets:`` (checked when the rules load).
    target_field: str | None = None
    # One line describing what the step would do, for dry runs.
    describe: Callable[[Any], str] | None = None

    @property
    def encoded(self) -> Mapping[str, Transform]:
        """The former name of ``transforms``: the loader compiles keys ``in`` it, and
        ``StepSpec.render`` passes it to ``render_params``."""
        return self.transforms
