"""Event validation, canonical form and ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.events import (
    EventInvalid,
    canonical_json,
    check_age,
    digest,
    new_event_id,
    parse_event,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"timestamp": "2024-01-15T10:30:00Z", "data": {}}', "event"),
        (b'{"event": 5, "timestamp": "2024-01-15T10:30:00Z", "data": {}}', "event"),
        (b'{"event": "", "timestamp": "2024-01-15T10:30:00Z", "data": {}}', "event"),
        (b'{"event": "vps.created", "data": {}}', "timestamp"),
        (b'{"event": "vps.created", "timestamp": "2024-01-15", "data": {}}', "timestamp"),
        (b'{"event": "vps.created", "timestamp": "2024-01-15T10:30:00", "data": {}}', "timestamp"),
        (b'{"event": "vps.created", "timestamp": "2024-13-45T10:30:00Z", "data": {}}', "timestamp"),
        (b'{"event": "vps.created", "timestamp": "2024-01-15T10:30:00Z"}', "data"),
        (b'{"event": "vps.created", "timestamp": "2024-01-15T10:30:00Z", "data": []}', "data"),
        (b"\xff\xfe", "body"),
    ],
)
def test_invalid_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(EventInvalid) as info:
        parse_event(body)
    assert info.value.field == field


@pytest.mark.parametrize(
    "value",
    ["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.123456+10:00", "2024-01-15t10:30:00z"],
)
def test_rfc3339_timestamps(value: str) -> None:
    assert parse_timestamp(value).tzinfo is not None


def test_age_window() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def event_at(ts: datetime) -> bytes:
        return f'{{"event":"x","timestamp":"{ts.isoformat()}","data":{{}}}}'.encode()

    check_age(parse_event(event_at(now - timedelta(days=6))), 7 * 86400, now)
    check_age(parse_event(event_at(now + timedelta(minutes=4))), 7 * 86400, now)
    for ts in (now - timedelta(days=8), now + timedelta(minutes=6)):
        with pytest.raises(EventInvalid) as info:
            check_age(parse_event(event_at(ts)), 7 * 86400, now)
        assert info.value.field == "timestamp"


def test_canonical_json_ignores_order_and_whitespace() -> None:
    a = {"event": "x", "data": {"b": 1, "a": "ü"}}
    b = {"data": {"a": "ü", "b": 1}, "event": "x"}
    assert canonical_json(a) == canonical_json(b) == '{"data":{"a":"ü","b":1},"event":"x"}'.encode()
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "event": "y"})


def test_event_ids_unique_and_time_ordered() -> None:
    ids = [new_event_id(1_700_000_000_000 + i) for i in range(100)]
    assert len(set(ids)) == 100
    assert ids == sorted(ids)
    assert all(i.startswith("evt_") and len(i) == 30 for i in ids)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["nan", "infinity", "overflow", "lone-surrogate", "deep"],
)
def test_not_strict_json_is_refused(data: bytes) -> None:
    body = b'{"event": "x", "timestamp": "2024-01-15T10:30:00Z", "data": ' + data + b"}"
    with pytest.raises(EventInvalid) as info:
        parse_event(body)
    assert info.value.field == "body"


def test_canonical_bytes_computed_once() -> None:
    event = parse_event(
        b'{"data": {"b": 1, "a": 2}, "timestamp": "2024-01-15T10:30:00Z", "event": "x"}'
    )
    assert event.canonical == canonical_json(event.raw)
    assert event.digest == digest(event.raw)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("dedup_window", "0"),
        ("dedup_window", "7days"),
        ("dedup_window", "36500d"),
        ("log_level", "LOUD"),
        ("api_url", "notaurl"),
        ("redis_url", "foo://x"),
        ("port", "70000"),
        ("shutdown_grace", "soon"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    from receiver.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as info:
        load_settings(**{name: value})
    assert str(info.value).startswith(f"TASHOOKS_{name.upper()}: ")
    assert "Value error" not in str(info.value)


def test_the_dedup_window_is_capped_with_the_maximum_named() -> None:
    from receiver.settings import SettingsError, load_settings

    assert load_settings(dedup_window="365d").dedup_window == 365 * 86400
    with pytest.raises(SettingsError) as info:
        load_settings(dedup_window="366d")
    assert str(info.value).startswith("TASHOOKS_DEDUP_WINDOW: must be at most 365d")


def test_a_huge_integer_is_refused_with_a_hint_for_the_sender() -> None:
    body = b'{"event": "vps.created", "timestamp": "2024-01-15T10:30:00Z", "data": {"n": '
    body += b"9" * 5000 + b"}}"
    with pytest.raises(EventInvalid) as info:
        parse_event(body)
    assert info.value.field == "body"
    assert "more than 4300 digits" in info.value.message
    assert "sys." not in info.value.message


def test_a_secret_set_twice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from receiver.settings import SettingsError, load_settings

    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")
    monkeypatch.setenv("TASHOOKS_WEBHOOK_SECRET_FILE", str(secret_file))
    assert load_settings().require_webhook_secret() == [b"from-the-file"]
    monkeypatch.setenv("TASHOOKS_WEBHOOK_SECRET", "from-the-variable")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "TASHOOKS_WEBHOOK_SECRET and TASHOOKS_WEBHOOK_SECRET_FILE are both set" in str(
        info.value
    )
