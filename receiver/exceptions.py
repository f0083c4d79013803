"""Errors of the receiver.

Hierarchy::

    ReceiverError
    ├── StoreUnavailable   Redis could not be reached or did not confirm the write
    ├── NotFound           no event / dead letter with that id (kind=, id=)
    │   └── Superseded     a dead letter of a run that a replay of its event superseded
    └── InvalidQuery       a query parameter of the admin API or the CLI is wrong (field=)
"""

from __future__ import annotations


class ReceiverError(Exception):
    """Root of the receiver's errors."""


class StoreUnavailable(ReceiverError):
    """Redis did not confirm the write: nothing may be acknowledged."""


class NotFound(ReceiverError):
    """Nothing of ``kind`` (``event``, ``dead letter``) has id ``id`` (any more)."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(kind, id)
        self.kind = kind
        self.id = id

    def __str__(self) -> str:
        return f"no {self.kind} {self.id}"


class Superseded(NotFound):
    """The dead letter ``id`` was of a run that replay ``replay`` of ``event_id`` superseded
    (the replay ran the rule again); it is removed instead of retried."""

    def __init__(self, id: str, event_id: str, replay: int) -> None:
        super().__init__("dead letter", id)
        self.event_id = event_id
        self.replay = replay

    def __str__(self) -> str:
        return (
            f"dead letter {self.id} was of a run that replay {self.replay} of event "
            f"{self.event_id} superseded (the replay ran the rule again); it is removed, "
            f"not retried: see the event's runs for how the replay went"
        )


class InvalidQuery(ReceiverError):
    """A query parameter (``field``) has a value that cannot be used; the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"
