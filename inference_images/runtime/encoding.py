"""Request bodies sent with a ``Content-Encoding``: which the runtime takes, and their decoding.

The runtime decodes request bodies itself (aiohttp's own decoding is off, ``lifecycle.serve``): aiohttp
answered an encoding it had no decoder for (zstd) with a plain-text 400 before any handler ran, and a
body that did not decode (a gzip header on plain JSON) with a 500. Here an encoding the runtime does not
take is a 415 and a body that does not decode a 400, both in the OIP error shape and naming the encoding,
and the body-size limit holds for what a body decodes to, so a small compressed upload cannot make the
replica parse more than an uncompressed one could.

Accepted: ``gzip`` (and its old name ``x-gzip``) and ``deflate`` (zlib-wrapped, as RFC 9110 says, or
raw, as some clients send it): what tritonclient's ``request_compression_algorithm`` sends. ``identity``
or no header: the body as it is.
"""

from __future__ import annotations

import zlib

ACCEPTED = ("gzip", "deflate")
_ALIASES = {"x-gzip": "gzip"}
_IDENTITY = ("", "identity")
# zlib window bits: gzip's header and trailer, zlib's, or none (raw deflate).
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class BodyEncodingError(Exception):
    """A body the runtime cannot take as encoded: ``status`` (400, 413 or 415) and the client's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def content_coding(header: str | None) -> str | None:
    """The one coding ``header`` (a request's ``Content-Encoding``) names, None for the body as it is;
    BodyEncodingError (415) for any coding, or list of codings, the runtime does not decode."""
    value = (header or "").strip().lower()
    if value in _IDENTITY:
        return None
    coding = _ALIASES.get(value, value)
    if coding not in ACCEPTED:
        shown = value if len(value) <= 40 and value.isprintable() else value[:40].encode("unicode_escape").decode()
        raise BodyEncodingError(
            415,
            f"request body has Content-Encoding '{shown}', which this runtime does not decode; send it as "
            f"{' or '.join(ACCEPTED)}, or uncompressed",
        )
    return coding


def decode_body(raw: bytes, coding: str, max_bytes: int) -> bytes:
    """``raw`` decoded from ``coding`` (one of ``ACCEPTED``), at most ``max_bytes`` of it: more is a 413,
    a body that does not decode a 400. Decoding stops at the limit, so a compression bomb costs no more
    than a body of the limit's size."""
    if coding == "gzip":
        return _inflate(raw, _GZIP_WBITS, coding, max_bytes)
    zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
    return _inflate(raw, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS, coding, max_bytes)


def _inflate(raw: bytes, wbits: int, coding: str, max_bytes: int) -> bytes:
    out: list[bytes] = []
    size = 0
    data = raw
    try:
        # Concatenated gzip members are one body (RFC 1952); anything after a zlib stream is not.
        while True:
            decoder = zlib.decompressobj(wbits)
            chunk = decoder.decompress(data, max_bytes - size + 1)
            size += len(chunk)
            if size > max_bytes:
                raise BodyEncodingError(
                    413, f"request body is larger than {max_bytes} bytes once decoded from Content-Encoding: {coding}"
                )
            out.append(chunk)
            if not decoder.eof:
                raise BodyEncodingError(400, f"request body could not be decoded as Content-Encoding: {coding} "
                                             "(it ends before its compressed data does)")
            data = decoder.unused_data
            if not data or wbits != _GZIP_WBITS:
                break
    except zlib.error:
        raise BodyEncodingError(400, f"request body could not be decoded as Content-Encoding: {coding} "
                                     "(it is not data compressed that way)") from None
    if data:
        raise BodyEncodingError(400, f"request body could not be decoded as Content-Encoding: {coding} "
                                     f"({len(data)} bytes follow its compressed data)")
    return b"".join(out)
