"""What of a step reaches the audit stream: secrets masked, bodies summarised."""

from __future__ import annotations

import pytest

from handlers.redact import redact, secret_values, summarize


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/***"),
        ("http://127.0.0.1:9123?token=s3cr3t-value", "http://127.0.0.1:9123/***"),
        ("http://127.0.0.1:9123/?token=s3cr3t-value", "http://127.0.0.1:9123/***"),
        ("http://hook:s3cr3t-value@127.0.0.1:9123", "http://127.0.0.1:9123/***"),
        ("https://audit.example", "https://audit.example"),
        ("not a url", "***"),
    ],
)
def test_urls_keep_only_scheme_host_port(url: str, shown: str) -> None:
    assert redact({"url": url}) == {"url": shown}


def test_configured_secrets_masked_anywhere_and_keys_by_name() -> None:
    secrets = secret_values(["admintok-XYZ123456", "sim-key", "abc"])
    params = {
        "message": "adm admintok-XYZ123456 key sim-key abc",
        "json": {"nested": ["x sim-key y"], "api_key": "plain"},
        "headers": {"Authorization": "Bearer whatever"},
        "content": "kubeconfig with sim-key",
    }
    assert redact(params, secrets=secrets) == {
        "message": "adm *** key *** abc",  # 'abc' is too short to mask inside text
        "json": {"nested": ["x *** y"], "api_key": "***"},
        "headers": {"Authorization": "***"},
        "content": "<23 bytes>",
    }


def test_results_are_summarised_without_bodies() -> None:
    assert summarize({"status": 200, "body": "secret kubeconfig", "headers": {}}) == {"status": 200}
    assert summarize({"path": "/data/x"}) == {"path": "/data/x"}
    assert summarize(None) is None
