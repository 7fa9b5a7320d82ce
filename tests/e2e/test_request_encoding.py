"""Through the real Envoy: the gateway passes a request body's Content-Encoding through as it is (it has
no decompressor filter), and the runtime decodes gzip and deflate, answers a body that does not decode
400 and any other encoding 415, both in the OIP error shape naming the encoding."""

from __future__ import annotations

import gzip
import zlib

import pytest

from bench.loadgen import infer_body
from tests.e2e.conftest import RunningPlatform, post

pytestmark = pytest.mark.e2e
US = "us-east-1"


def test_request_encodings_through_the_gateway(running: RunningPlatform) -> None:
    url, token = running.url(US, "/v2/models/classifier/infer"), running.token("globex")
    body = infer_body(["I love this"])
    for coding, sent in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        reply = post(url, sent, token, {"Content-Encoding": coding})
        assert reply.status == 200, (coding, reply.body)
    reply = post(url, body, token, {"Content-Encoding": "gzip"})
    assert reply.status == 400 and reply.body["code"] == 400, reply.body
    assert reply.body["error"].startswith("request body could not be decoded as Content-Encoding: gzip")
    for coding in ("br", "zstd"):
        reply = post(url, body, token, {"Content-Encoding": coding})
        assert reply.status == 415, reply.body
        assert reply.body == {"error": f"request body has Content-Encoding '{coding}', which this runtime does "
                                       "not decode; send it as gzip or deflate, or uncompressed", "code": 415}
