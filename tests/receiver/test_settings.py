"""Settings: Redis URLs shown in messages keep everything but their credentials."""

from __future__ import annotations

import pytest

from receiver.settings import SettingsError, load_settings, redact_redis_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@127.0.0.1:6391/4", "redis://***@127.0.0.1:6391/4"),
        ("rediss://app:hunter2@redis.example:6380/1", "rediss://***@redis.example:6380/1"),
        ("htp://:hunter2@127.0.0.1:6391/0", "htp://***@127.0.0.1:6391/0"),
        ("app:hunter2@127.0.0.1:6379/0", "***@127.0.0.1:6379/0"),
        ("redis://h/0?password=hunter2&db=2", "redis://h/0?password=***&db=2"),
        ("unix://:hunter2@/run/redis.sock?db=2", "unix://***@/run/redis.sock?db=2"),
        ("unix:///run/redis.sock?username=app&db=2", "unix:///run/redis.sock?username=***&db=2"),
    ],
)
def test_redis_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_redis_url(url) == shown


def test_a_bad_redis_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASHOOKS_REDIS_URL", "htp://:hunter2@127.0.0.1:6391/0")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "hunter2" not in str(raised.value)
    assert str(raised.value).startswith(
        "TASHOOKS_REDIS_URL: 'htp://***@127.0.0.1:6391/0' is not a Redis URL"
    )
