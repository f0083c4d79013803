"""Token-bucket rate limiting with the platform's ``X-RateLimit-*`` headers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """``burst`` tokens, refilled at ``per_minute / 60`` a second; one token a request.

    ``per_minute`` 0 disables limiting (every request passes, the headers still go out).
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self.capacity = max(burst, 1)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._wall = wall
        self._tokens = float(self.capacity)
        self._stamp = clock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        """Take a token if one is there."""
        if not self.enabled:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def remaining(self) -> int:
        """Whole tokens left now."""
        if not self.enabled:
            return self.capacity
        self._refill()
        return int(self._tokens)

    def retry_after(self) -> int:
        """Whole seconds until the next token (at least 1, as ``Retry-After`` wants)."""
        if not self.enabled:
            return 0
        self._refill()
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))

    def reset_at(self) -> int:
        """Epoch seconds at which the bucket is full again."""
        if not self.enabled:
            return int(self._wall())
        self._refill()
        return math.ceil(self._wall() + (self.capacity - self._tokens) / self._rate)

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit`` (per minute), ``-Remaining`` and ``-Reset`` (epoch)."""
        return {
            "X-RateLimit-Limit": str(self.per_minute),
            "X-RateLimit-Remaining": str(self.remaining()),
            "X-RateLimit-Reset": str(self.reset_at()),
        }
