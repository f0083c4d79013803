"""Every Redis key tashooks uses, as builders of one namespace (default ``tashooks``).

arq's own per-job keys (``arq:job:<id>``, ``arq:in-progress:<id>``, ``arq:retry:<id>``) are
fixed by arq; job ids are event ids, unique per delivery, so they never collide.
"""

from __future__ import annotations

from dataclasses import dataclass

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix


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

    @property
    def deadletter_runs(self) -> str:
        """Hash ``<event id> <rule>`` -> the id of that run's dead letter (one per run)."""
        return f"{self.ns}:deadletters:runs"

    def dedup(self, digest: str) -> str:
        """Marks a delivery (by digest of its canonical JSON) as seen; value: event id."""
        return f"{self.ns}:dedup:{digest}"

    def event(self, event_id: str) -> str:
        """Hash of one delivery, kept for the dedup window: ``stream`` (its audit entry id,
        which holds the event), ``type``, ``resource``, ``received_ms``, ``replays`` and
        ``retries`` (counters of ``receiver.requeue``), ``job`` (the newest job queued by a
        replay or a retry) and one ``run:<rule>`` field (JSON) per rule: its latest run."""
        return f"{self.ns}:event:{event_id}"

    def resource_last(self, resource_id: str) -> str:
        """Timestamp (ms) of the newest event handled for a resource (ordering)."""
        return f"{self.ns}:resource:{resource_id}:last"

    def resource_lock(self, resource_id: str) -> str:
        """Held while a worker runs ordered rules for a resource."""
        return f"{self.ns}:resource:{resource_id}:lock"

    @property
    def wake(self) -> str:
        """Pub/sub channel the receiver publishes on after queuing deliveries."""
        return f"{self.ns}:wake"

    @property
    def rules_version(self) -> str:
        """The version (hash) of the rules the workers last loaded, for ``/readyz``."""
        return f"{self.ns}:rules:version"

    @property
    def workers(self) -> str:
        """Sorted set of live worker ids by last heartbeat (ms)."""
        return f"{self.ns}:workers"

    def progress(self, event_id: str, rule: str) -> str:
        """Hash step index -> JSON result of a rule run's finished steps."""
        return f"{self.ns}:progress:{event_id}:{rule}"

    def concurrency(self, rule: str) -> str:
        """Sorted set of a rule's running claims (token -> expiry ms), for ``concurrency``."""
        return f"{self.ns}:concurrency:{rule}"

    def throttle(self, rule: str, key: str) -> str:
        """Throttle window counter of a rule for one rendered key."""
        return f"{self.ns}:throttle:{rule}:{key}"

    def job(self, job_id: str) -> str:
        """arq's job key."""
        return job_key_prefix + job_id

    def in_progress(self, job_id: str) -> str:
        """arq's mark of a job a worker is running."""
        return in_progress_key_prefix + job_id

    def job_keys(self, job_id: str) -> tuple[str, str, str]:
        """Every key arq keeps for a job: its data, its in-progress mark, its try count."""
        return self.job(job_id), self.in_progress(job_id), retry_key_prefix + job_id
