"""What a log line is about: the event and the HTTP request being handled.

Context variables, set where an event or request is taken up (the receiver's view, the
worker's jobs) and read by the log formatter, so every line carries them without each
call having to pass them.
"""

from __future__ import annotations

from contextvars import ContextVar

event_id: ContextVar[str | None] = ContextVar("tashooks_event_id", default=None)
request_id: ContextVar[str | None] = ContextVar("tashooks_request_id", default=None)
