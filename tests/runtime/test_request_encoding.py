"""Request bodies with a Content-Encoding, through the runtime's HTTP API: gzip and deflate are decoded
and served, a body that does not decode is a 400 naming the encoding, an encoding the runtime does not
take a 415 (never aiohttp's plain-text answer naming a Python package, never a 500), and the body limit
holds for what a body decodes to."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import pytest

from tests.runtime.conftest import TENANT, RuntimeServer, start_server, text_request

INFER = "/v2/models/classifier/infer"
BODY = json.dumps(text_request("I love this")).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[RuntimeServer]:
    running = start_server("classifier:v1:lexicon", max_body_bytes=256 * 1024)
    running.wait_ready(10)
    yield running
    running.stop()


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZip", gzip.compress(BODY[:20]) + gzip.compress(BODY[20:])),  # two members are one body
        ("deflate", zlib.compress(BODY)),  # zlib-wrapped, as tritonclient sends it
        ("deflate", raw_deflate(BODY)),
        ("identity", BODY),
    ],
)
def test_gzip_and_deflate_bodies_are_served(server: RuntimeServer, coding: str, body: bytes) -> None:
    reply = server.infer(INFER, body, headers={**TENANT, "Content-Encoding": coding})
    assert reply.status == 200, reply.body
    assert reply.body["outputs"][0]["data"] == ["positive"]


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("gzip", BODY, "request body could not be decoded as Content-Encoding: gzip (it is not data compressed"),
        ("deflate", BODY, "request body could not be decoded as Content-Encoding: deflate"),
        # Cut in its trailer (a connection that dropped), and with bytes after it that are no gzip member.
        ("gzip", gzip.compress(BODY)[:-6], "request body could not be decoded as Content-Encoding: gzip (it ends"),
        ("gzip", gzip.compress(BODY) + b"trailing", "request body could not be decoded as Content-Encoding: gzip"),
    ],
)
def test_a_body_that_does_not_decode_is_a_400_naming_the_encoding(server: RuntimeServer, coding: str, body: bytes,
                                                                  message: str) -> None:
    reply = server.infer(INFER, body, headers={**TENANT, "Content-Encoding": coding})
    assert reply.status == 400, reply.body
    assert reply.error.startswith(message) and reply.body["code"] == 400


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "gzip, gzip"])
def test_an_encoding_the_runtime_does_not_take_is_a_415_naming_it(server: RuntimeServer, coding: str) -> None:
    reply = server.infer(INFER, BODY, headers={**TENANT, "Content-Encoding": coding})
    assert reply.status == 415, reply.body
    assert reply.body == {"error": f"request body has Content-Encoding '{coding}', which this runtime does not "
                                   "decode; send it as gzip or deflate, or uncompressed", "code": 415}
    assert server.infer(INFER, BODY).status == 200  # the connection and the replica are fine


def test_the_body_limit_holds_for_what_a_body_decodes_to(server: RuntimeServer) -> None:
    bomb = gzip.compress(b" " * (4 * 1024 * 1024))  # 4 KiB on the wire, 4 MiB decoded
    assert len(bomb) < 8 * 1024
    reply = server.infer(INFER, bomb, headers={**TENANT, "Content-Encoding": "gzip"})
    assert reply.status == 413, reply.body
    assert reply.error == "request body is larger than 262144 bytes once decoded from Content-Encoding: gzip"
