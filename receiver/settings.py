"""Settings: one typed object, built once at start-up from ``TASHOOKS_*`` variables.

Every secret can also be given as ``TASHOOKS_<NAME>_FILE`` (a path whose content, stripped
of surrounding white space, is the value), for Docker and Kubernetes secrets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.durations import parse_duration

PREFIX = "TASHOOKS_"
SECRET_FIELDS = ("webhook_secret", "api_key", "admin_token")
MASK = "***"
# The user info of a URL (``user:password@``), with or without ``scheme://`` before it.
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^/?#]*@")
# Credentials redis-py also takes in the query (``?password=…``).
_QUERY_CREDENTIAL = re.compile(r"([?&](?:password|username)=)[^&#]*", re.IGNORECASE)


def redact_redis_url(url: str) -> str:
    """``url`` fit to show: its credentials (user info, ``password=``/``username=`` in the
    query) masked; scheme, host, port, path and database number kept, so that a message
    still shows which Redis, and a mistyped scheme or port stays visible."""
    url = _USERINFO.sub(rf"\1{MASK}@", url, count=1)
    return _QUERY_CREDENTIAL.sub(rf"\1{MASK}", url)


# The longest DEDUP_WINDOW: how long deliveries, jobs and the audit stream are kept.
MAX_DEDUP_WINDOW_S = 365 * 86400


class SettingsError(Exception):
    """The environment does not describe a usable configuration; the message names the variable."""


class Settings(BaseSettings):
    """tashooks settings (see README, "Settings")."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    webhook_secret: SecretStr | None = None
    api_url: str = "https://api.tasmanian.cloud/v1"
    api_key: SecretStr | None = None
    rules: Path = Path("./rules.yaml")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body: int = Field(default=1_048_576, gt=0)
    dedup_window: float = 7 * 86400.0
    data_dir: Path = Path("./data")
    admin_token: SecretStr | None = None
    # Prefix of every Redis key tashooks writes (and its arq queue), so that two
    # installations, or the demo, can share one Redis without touching each other.
    namespace: str = Field(default="tashooks", pattern=r"^[A-Za-z0-9_.-]+$")
    # How often an idle worker looks at the queue (seconds) when nothing wakes it: the
    # receiver wakes workers when it queues work, so this only bounds how late a deferred
    # job, or work queued while the wake-up channel was down, is picked up.
    poll_delay: float = Field(default=0.5, gt=0)
    # Jobs one worker runs at once.
    max_jobs: int = Field(default=50, gt=0)
    log_level: str = "INFO"
    # json (one object a line), text (for people), or auto: text on a terminal.
    log_format: str = Field(default="auto", pattern=r"^(auto|json|text)$")
    # Seconds running jobs get to finish on SIGTERM before they are cancelled (and re-run
    # later by another worker).
    shutdown_grace: float = 30.0
    # How long a worker keeps retrying Redis commands through an outage before it exits
    # (non-zero, for its supervisor to restart it).
    redis_retry: float = 60.0
    # Port of a worker's own /metrics (on HOST); 0 turns it off. In `serve` the receiver's
    # /metrics includes the worker's.
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    # Connections the worker keeps to the API (jobs beyond this wait for one).
    api_max_connections: int = Field(default=100, gt=0)

    @field_validator("dedup_window", "shutdown_grace", "redis_retry", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL, e.g. https://api.tasmanian.cloud/v1"
            )
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"{redact_redis_url(value)!r} is not a Redis URL, e.g. redis://127.0.0.1:6379/0"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"{value!r} is not one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @field_validator("dedup_window")
    @classmethod
    def _window(cls, value: float) -> float:
        if value < 60:
            raise ValueError("must be at least 1m (deliveries are remembered that long)")
        if value > MAX_DEDUP_WINDOW_S:
            raise ValueError(
                f"must be at most {MAX_DEDUP_WINDOW_S // 86400}d (the audit stream and "
                "every remembered delivery are kept that long); set a shorter window"
            )
        return value

    def secret_values(self) -> list[str]:
        """Every secret value configured (to keep out of logs)."""
        values = [s.decode() for s in self.webhook_secrets]
        for secret in (self.api_key, self.admin_token):
            if secret is not None:
                values.append(secret.get_secret_value())
        return values

    @property
    def webhook_secrets(self) -> list[bytes]:
        """The configured webhook secrets (several during rotation), as bytes."""
        if self.webhook_secret is None:
            return []
        parts = self.webhook_secret.get_secret_value().split(",")
        return [p.strip().encode() for p in parts if p.strip()]

    def require_webhook_secret(self) -> list[bytes]:
        """Return the secrets, or raise if none (or only empty ones) is configured."""
        secrets = self.webhook_secrets
        if not secrets:
            raise SettingsError(
                f"{PREFIX}WEBHOOK_SECRET is not set (or is empty): set it (or "
                f"{PREFIX}WEBHOOK_SECRET_FILE) to the secret you registered with tasmanian.cloud"
            )
        return secrets


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (``*_FILE`` variants included) plus ``overrides``.

    Raises ``SettingsError`` whose message names the offending variable.
    """
    values: dict[str, Any] = {}
    for name in SECRET_FIELDS:
        var = f"{PREFIX}{name.upper()}_FILE"
        path = os.environ.get(var)
        if path and name not in overrides:
            if os.environ.get(f"{PREFIX}{name.upper()}"):
                raise SettingsError(
                    f"{PREFIX}{name.upper()} and {var} are both set; set one of them"
                )
            try:
                values[name] = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{var}: cannot read {path}: {exc.strerror}") from exc
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            messages.append(f"{PREFIX}{field.upper()}: {message}")
        raise SettingsError("; ".join(messages)) from exc
