"""Errors of the worker side.

Hierarchy::

    HandlersError
    ├── RulesError            rules file does not validate (carries every problem)
    └── StepError             a step failed; ``retryable`` says whether trying again may help
        ├── ApiError          the API answered with an error (code, message, details)
        │   └── RateLimited   429: ``retry_after`` seconds to wait
        ├── TransportError    the request did not complete (connection, timeout)
        ├── TargetError       a Slack / HTTP target answered with an error
        ├── StepTimeout       the step took longer than its ``timeout``
        └── Deferred          wait too long to sleep in a job: run the rule again later
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class HandlersError(Exception):
    """Root of the worker-side errors."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a rules file."""

    file: str
    line: int  # 0 when the problem is the file itself (it cannot be read)
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file  # 0: the file
        return f"{where}: {kind}{self.message}"


class RulesError(HandlersError):
    """The rules file does not validate. ``problems`` lists every mistake found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StepError(HandlersError):
    """A step failed. ``retryable``: whether another attempt may succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        self.context = context

    def __str__(self) -> str:
        return self.message


class ApiError(StepError):
    """The API answered with its error format (or an unexpected status)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(
            f"API {status} {code}: {message}",
            retryable=retryable if retryable is not None else status >= 500,
        )
        self.status = status
        self.code = code
        self.api_message = message
        self.details = details or {}


class RateLimited(ApiError):
    """429 from the API; ``retry_after`` is how long to wait, in seconds."""

    def __init__(self, message: str, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, status=429, code="rate_limited", details=details, retryable=True)
        self.retry_after = retry_after


class TransportError(StepError):
    """The request did not complete: connection refused or reset, timeout, pool exhausted."""


class TargetError(StepError):
    """A Slack or HTTP target answered with an error status."""

    def __init__(self, message: str, *, status: int, retryable: bool, retry_after: float = 0.0):
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after


class StepTimeout(StepError):
    """The step ran longer than its ``timeout``."""


class Deferred(StepError):
    """The step must wait ``delay`` seconds: too long to sleep inside a job."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message, retryable=True)
        self.delay = delay
