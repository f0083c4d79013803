"""Errors of the receiver.

Hierarchy::

    ReceiverError
    └── StoreUnavailable   Redis could not be reached or did not confirm the write
"""

from __future__ import annotations


class ReceiverError(Exception):
    """Root of the receiver's errors."""


class StoreUnavailable(ReceiverError):
    """Redis did not confirm the write: nothing may be acknowledged."""
