"""What is done to each ``{{ }}`` output of a template, per parameter (a Jinja ``finalize``).

A step type names them in ``StepType.transforms``; they never touch the rule's own text.
This module imports nothing of ours, so templates, steps and the API catalogue share it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

# What a transform does to each ``{{ }}`` output.
Transform = Callable[[object], str]


class SegmentError(Exception):
    """An output that cannot be a path segment (it is empty)."""


def encode_segment(value: object) -> str:
    """``value`` as one percent-encoded URL path segment (or file name).

    ``/`` becomes ``%2F``; exactly ``.`` or ``..`` become ``%2E`` / ``%2E%2E``; empty raises
    ``SegmentError``.
    """
    text = quote(str(value), safe="")
    if text == ".":
        return "%2E"
    if text == "..":
        return "%2E%2E"
    if not text:
        # "/vps//actions" could reach a different endpoint than the rule's author meant.
        raise SegmentError("a value placed in the path is empty")
    return text


def escape_slack(value: object) -> str:
    """``value`` as Slack text that is only text.

    Slack reads ``<...>`` as mentions (``<!channel>``, ``<@U123>``) and links
    (``<https://x|label>``), and ``&`` starts an entity; these three are all it parses.
    """
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
