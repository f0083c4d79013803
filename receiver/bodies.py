"""Request bodies sent with a ``Content-Encoding``, decoded by the receiver itself.

aiohttp's own decompression is off (``create_app``): a body that is not valid for its
encoding surfaced as an exception from deep in the reader (a 500 and a traceback) and an
encoding it cannot decode as a plain-text 400. Here both are ordinary answers, and the
decoded size is capped while decoding (a small gzip bomb cannot grow past the limit).
"""

from __future__ import annotations

import zlib

# Content-Encoding (lower case) -> zlib's wbits for it; ``identity`` is no encoding.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
SUPPORTED = ("gzip", "deflate")


class BodyUndecodable(Exception):
    """The body cannot be decoded: ``status`` 400 (not valid for its encoding) or 415 (an
    encoding not supported); ``reason`` is the rejection's name, ``message`` says what to do."""

    def __init__(self, status: int, code: str, reason: str, message: str, encoding: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason
        self.message = message
        self.details = {"content_encoding": encoding}


def decode(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """``body`` decoded as ``content_encoding`` says, or None when that is larger than
    ``limit`` bytes. Raises :class:`BodyUndecodable`."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    shown = content_encoding[:32]
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise BodyUndecodable(
            415,
            "unsupported_media_type",
            "unsupported_encoding",
            f"Content-Encoding {shown!r} is not supported; send the body uncompressed, or "
            f"compressed with {' or '.join(SUPPORTED)}",
            shown,
        )
    decompressor = zlib.decompressobj(wbits)
    try:
        decoded = decompressor.decompress(body, limit + 1)
    except zlib.error:
        decoded = b""
    else:
        if len(decoded) > limit:
            return None
        if decompressor.eof and not decompressor.unused_data:
            return decoded
    raise BodyUndecodable(
        400,
        "bad_request",
        "bad_encoding",
        f"the body is not valid {shown} data (Content-Encoding: {shown}); send it compressed "
        f"with {shown} in full, or uncompressed without a Content-Encoding header",
        shown,
    )
