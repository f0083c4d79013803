"""Every Redis key tashooks uses, as builders of one namespace (default ``tashooks``).

arq's own per-job keys (``arq:job:<id>``, ``arq:in-progress:<id>``, ``arq:retry:<id>``) are
fixed by arq; job ids are event ids, unique per delivery, so they never collide.
"""

from __future__ import annotations

from dataclasses import dataclass

ARQ_JOB_PREFIX = "arq:job:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one namespace."""

    ns: str = "tashooks"

    @property
    def queue(self) -> str:
        """arq queue (sorted set of job ids by run time)."""
        return f"{self.ns}:queue"

    @property
    def audit(self) -> str:
        """Audit stream: every delivery and rule run."""
        return f"{self.ns}:audit"

    @property
    def deadletters(self) -> str:
        """Hash dead-letter id -> JSON record."""
        return f"{self.ns}:deadletters"

    @property
    def deadletter_index(self) -> str:
        """Sorted set of dead-letter ids by time of failure."""
        return f"{self.ns}:deadletters:index"

    def dedup(self, digest: str) -> str:
        """Marks a delivery (by digest of its canonical JSON) as seen; value: event id."""
        return f"{self.ns}:dedup:{digest}"

    def event(self, event_id: str) -> str:
        """The stored delivery (JSON), kept for the dedup window for replay and lookup."""
        return f"{self.ns}:event:{event_id}"

    def progress(self, event_id: str, rule: str) -> str:
        """Hash step index -> JSON result of a rule run's finished steps."""
        return f"{self.ns}:progress:{event_id}:{rule}"

    def throttle(self, rule: str, key: str) -> str:
        """Throttle window counter of a rule for one rendered key."""
        return f"{self.ns}:throttle:{rule}:{key}"

    def job(self, job_id: str) -> str:
        """arq's job key."""
        return ARQ_JOB_PREFIX + job_id
