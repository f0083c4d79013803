"""Log lines: JSON or text, the event id from the context, secrets masked."""

from __future__ import annotations

import json
import logging

from receiver import logctx
from tashooks.logs import ContextFilter, JsonFormatter, TextFormatter


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tashooks.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_context_and_extras() -> None:
    token = logctx.event_id.set("evt_01")
    try:
        record = _record("rule %s ran", "look", rule="look")
        assert ContextFilter().filter(record)
    finally:
        logctx.event_id.reset(token)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "rule look ran"
    assert doc["event_id"] == "evt_01" and doc["rule"] == "look"
    assert doc["level"] == "info" and doc["logger"] == "tashooks.test"
    assert doc["ts"].endswith("Z")


def test_text_lines_are_readable() -> None:
    record = _record("delivery accepted", event_id="evt_02", event_type="vps.created")
    ContextFilter().filter(record)
    line = TextFormatter().format(record)
    assert "INFO" in line and "[evt_02]" in line
    assert line.index("delivery accepted") < line.index("event_type=vps.created")


def test_secret_values_are_masked_wherever_they_appear() -> None:
    record = _record(
        "calling %s with %s", "https://hooks.example/services/XYZSECRET123", "token=abcdefgh12345"
    )
    ContextFilter(["XYZSECRET123", "abcdefgh12345", "short"]).filter(record)
    message = record.getMessage()
    assert "XYZSECRET123" not in message and "abcdefgh12345" not in message
    assert message == "calling https://hooks.example/services/*** with token=***"


def test_values_added_later_are_masked_too() -> None:
    """The worker adds the rules' ``${NAME}`` values once it has loaded them."""
    log_filter = ContextFilter(["webhook-secret"])
    log_filter.add_secrets(["https://hooks.example/T1/B1/XYZ", "short"])
    record = _record("posting to %s failed (%s)", "https://hooks.example/T1/B1/XYZ", "short")
    log_filter.filter(record)
    assert record.getMessage() == "posting to *** failed (short)"
