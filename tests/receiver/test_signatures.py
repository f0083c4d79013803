"""Signature checks against the published vectors, and the raw-bytes rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.events import canonical_json
from receiver.signatures import sign, verify

# A copy of the published vectors (shared/vectors/hmac-sha256.json), kept with the tests so
# that they run from any clone.
VECTORS = json.loads((Path(__file__).parent / "data" / "hmac-sha256.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['header'][:14]}-{v['valid']}")
def test_published_vectors(vector: dict[str, object]) -> None:
    body = str(vector["body"]).encode()
    secret = str(vector["secret"]).encode()
    assert verify(body, str(vector["header"]), [secret]) is vector["valid"]


@pytest.mark.parametrize(
    "header",
    [
        "f417af3a21bd70379b5796d5f013915e7029f62c580fb0f500f59a35a6f04c89",
        "F417AF3A21BD70379B5796D5F013915E7029F62C580FB0F500F59A35A6F04C89",
        "sha256=F417AF3A21BD70379B5796D5F013915E7029F62C580FB0F500F59A35A6F04C89",
        "SHA256=f417af3a21bd70379b5796d5f013915e7029f62c580fb0f500f59a35a6f04c89",
    ],
)
def test_prefix_and_upper_case_accepted(header: str) -> None:
    assert verify(b'{"a": "z"}', header, [b"secret"])


@pytest.mark.parametrize("header", [None, "", "sha256=", "zz", "sha256=ü", "f417af3a"])
def test_malformed_headers_refused(header: str | None) -> None:
    assert not verify(b'{"a": "z"}', header, [b"secret"])


def test_any_configured_secret_during_rotation() -> None:
    body = b'{"event":"vps.created"}'
    assert verify(body, sign(body, b"new"), [b"old", b"new"])
    assert verify(body, sign(body, b"old"), [b"old", b"new"])
    assert not verify(body, sign(body, b"other"), [b"old", b"new"])
    assert not verify(body, sign(body, b"old"), [])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event":"vps.created","timestamp":"2024-01-15T10:30:00Z","data":{}}\n',
        b'{"data": {}, "timestamp": "2024-01-15T10:30:00Z", "event": "vps.created"}',
        '{"event":"vps.created","timestamp":"2024-01-15T10:30:00Z","data":{"name":"süd-ö"}}'.encode(),
    ],
    ids=["trailing-newline", "reordered-keys", "non-ascii"],
)
def test_signature_is_over_raw_bytes_not_reserialised(raw: bytes) -> None:
    signature = sign(raw, b"s3cret")
    assert verify(raw, signature, [b"s3cret"])
    # What a receiver that parses first and signs its own serialisation would check.
    reserialised = canonical_json(json.loads(raw))
    assert reserialised != raw
    assert not verify(reserialised, signature, [b"s3cret"])
