"""Request shapes and deadlines through the runtime's HTTP API: a body nested absurdly deep is a 400 naming
the nesting (not a 500), a request larger than its model takes per request is a 413 naming the limit before
it is queued, and work whose deadline passed (504) or whose client left (499) never reaches the model."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from inference_images.runtime.__main__ import parse_settings
from inference_images.runtime.models.base import RequestLimits, Tensor
from inference_images.runtime.models.lexicon import LIMITS as LEXICON_LIMITS
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import default_loaders
from tests.runtime.conftest import TENANT, RuntimeServer, start_server, text_request

INFER = "/v2/models/classifier/infer"
HELD = "/v2/models/held/infer"


def nested(depth: int, leaf: str = '"x"') -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    "body",
    [
        nested(20_000, ""),  # the shape from the issue: nothing but arrays
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ' + nested(20_000) + "}]}",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"], "parameters": {"p": '
        + nested(200) + "}}]}",
    ],
    ids=["bare-arrays", "in-data", "in-parameters"],
)
def test_a_body_nested_too_deep_is_a_400_naming_the_nesting(lexicon_server: RuntimeServer, body: str) -> None:
    reply = lexicon_server.infer(INFER, body)
    assert reply.status == 400, reply.body
    assert "nests arrays and objects more than 32 levels deep" in reply.error
    # The server is fine afterwards.
    assert lexicon_server.infer(INFER, text_request("good")).status == 200


def test_too_many_rows_is_a_413_naming_the_limit(lexicon_server: RuntimeServer) -> None:
    limit = LEXICON_LIMITS.max_rows
    reply = lexicon_server.infer(INFER, text_request(*["ok"] * (limit + 1)))
    assert reply.status == 413, reply.body
    assert f"input 'text' has {limit + 1} rows" in reply.error
    assert f"model 'classifier' accepts at most {limit} rows per request" in reply.error
    assert lexicon_server.infer(INFER, text_request(*["ok"] * limit)).status == 200


def test_a_request_too_large_is_refused_from_its_shape_before_its_data_is_walked(lexicon_server: RuntimeServer) -> None:
    # The shape alone says the request is too large: its data (which does not even match it) is never
    # walked, so a refused request costs its JSON decode and nothing per element.
    limit = LEXICON_LIMITS.max_rows
    body = {"inputs": [{"name": "text", "shape": [limit * 100], "datatype": "BYTES", "data": ["x", 1, None]}]}
    reply = lexicon_server.infer(INFER, body)
    assert reply.status == 413, reply.body
    assert reply.error == (f"input 'text' has {limit * 100} rows; model 'classifier' accepts at most {limit} rows "
                           "per request (split it into several requests)")
    # A body large enough to be parsed off the event loop answers the same, and a good one is served.
    big = text_request(*[""] * (limit * 10))
    assert len(json.dumps(big)) > 64 * 1024
    assert lexicon_server.infer(INFER, big).status == 413
    good = text_request(*["a fine text"] * limit)
    assert len(json.dumps(good)) > 64 * 1024
    reply = lexicon_server.infer(INFER, good)
    assert reply.status == 200 and len(reply.body["outputs"][0]["data"]) == limit


def test_too_many_bytes_is_a_413_naming_the_limit(lexicon_server: RuntimeServer) -> None:
    limit = LEXICON_LIMITS.max_bytes
    assert limit is not None
    text = "é" * 1000  # 2,000 bytes of UTF-8: bytes are counted, not characters
    count = limit // 2000 + 1
    body = json.dumps(text_request(*[text] * count), ensure_ascii=False).encode()
    reply = lexicon_server.infer(INFER, body)
    assert reply.status == 413, reply.body
    assert f"inputs hold {count * 2000} bytes of data" in reply.error
    assert f"accepts at most {limit} bytes per request" in reply.error


def test_the_limits_can_be_set_per_model_on_the_command_line() -> None:
    settings, _ = parse_settings(
        ["--region", "r", "--pool", "p", "--model", "classifier:v1:lexicon", "--request-limit", "classifier:2:64"]
    )
    assert settings.request_limits == (("classifier", RequestLimits(2, 64)),)
    model = LexiconSentimentModel("classifier", "v1", negation=False)
    # The operator's rows and bytes; the model's own chunk size.
    assert settings.limits_for(model) == RequestLimits(2, 64, LEXICON_LIMITS.chunk_rows)
    assert settings.limits_for(LexiconSentimentModel("other", "v1", negation=False)) == LEXICON_LIMITS

    server = start_server("classifier:v1:lexicon", request_limits=settings.request_limits)
    try:
        server.wait_ready(5)
        reply = server.infer(INFER, text_request("a", "b", "c"))
        assert reply.status == 413 and "accepts at most 2 rows per request" in reply.error
        assert server.infer(INFER, text_request("a", "b")).status == 200
    finally:
        server.stop()


@pytest.mark.parametrize("spec", ["classifier", "classifier:many", "classifier:0", "classifier:2:-1", ":2"])
def test_a_bad_request_limit_flag_names_the_problem(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--region", "r", "--pool", "p", "--model", "m:v1:lexicon", "--request-limit", spec])
    assert "--request-limit" in capsys.readouterr().err


class HeldModel(LexiconSentimentModel):
    """The lexicon, recording every text it is given; a call with the text "hold" waits for the gate."""

    gate = threading.Event()
    seen: list[str] = []

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        texts = inputs["text"].data
        HeldModel.seen.extend(texts)
        if "hold" in texts:
            assert HeldModel.gate.wait(30), "gate never opened"
        return super().predict(inputs)


@pytest.fixture
def held_server() -> Iterator[RuntimeServer]:
    loaders = default_loaders()
    loaders.register("held", lambda name, version: HeldModel(name, version, negation=False))
    HeldModel.gate.clear()
    HeldModel.seen.clear()
    server = start_server("held:v1:held", loaders=loaders)
    server.wait_ready(10)
    yield server
    HeldModel.gate.set()
    server.stop()


def start_held(server: RuntimeServer) -> threading.Thread:
    """A request that holds the worker until the gate opens (no deadline: nobody gives up on it)."""
    thread = threading.Thread(target=server.infer, args=(HELD, text_request("hold")), daemon=True)
    thread.start()
    wait_for(lambda: "hold" in HeldModel.seen)
    return thread


def wait_for(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll; the timeout is a hang guard, not a performance target."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def loop_turns(server: RuntimeServer, turns: int = 3) -> None:
    """Let the server's event loop run a few iterations, so it has read what the kernel already holds for
    it (a closed connection): each turn is one round trip through the loop's ready queue."""
    assert server._loop is not None
    for _ in range(turns):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), server._loop).result(10)


def requests_with_code(server: RuntimeServer, code: int) -> float:
    prefix = f'fairshare_runtime_requests_total{{code="{code}",model="held",version="v1"}}'
    lines = [line for line in server.get("/metrics").body.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def queued(server: RuntimeServer, tenant: str) -> bool:
    return f'fairshare_runtime_tenant_queue_depth{{tenant="{tenant}"}} 1.0' in server.get("/metrics").body


def outcome(server: RuntimeServer, tenant: str, name: str) -> float:
    prefix = f'fairshare_runtime_scheduled_requests_total{{outcome="{name}",tenant="{tenant}"}}'
    lines = [line for line in server.get("/metrics").body.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_request_whose_deadline_passes_while_queued_is_a_504_and_never_runs(held_server: RuntimeServer) -> None:
    holder = start_held(held_server)
    result: list[object] = []
    headers = {"x-fairshare-tenant": "late", "x-envoy-expected-rq-timeout-ms": "200"}
    waiter = threading.Thread(
        target=lambda: result.append(held_server.infer(HELD, text_request("too late"), headers)), daemon=True
    )
    waiter.start()
    wait_for(lambda: queued(held_server, "late"))
    time.sleep(0.3)  # let its 200 ms deadline pass while it is queued
    HeldModel.gate.set()
    waiter.join(30)
    holder.join(30)
    (reply,) = result
    assert reply.status == 504, reply.body  # type: ignore[attr-defined]
    assert "deadline passed while it was queued" in reply.error  # type: ignore[attr-defined]
    assert "too late" not in HeldModel.seen
    assert outcome(held_server, "late", "expired") == 1


def test_a_request_whose_client_left_while_queued_never_runs_and_counts_as_499(held_server: RuntimeServer) -> None:
    holder = start_held(held_server)
    body = json.dumps(text_request("nobody waits")).encode()
    with socket.create_connection(("127.0.0.1", held_server.port)) as client:
        client.sendall(
            f"POST {HELD} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"x-fairshare-tenant: leaver\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        wait_for(lambda: queued(held_server, "leaver"))
    # The client is gone; once the server has seen it go, the worker frees up.
    loop_turns(held_server)
    HeldModel.gate.set()
    holder.join(30)
    wait_for(lambda: requests_with_code(held_server, 499) == 1)
    assert "nobody waits" not in HeldModel.seen
    assert outcome(held_server, "leaver", "cancelled") == 1
    assert held_server.infer(HELD, text_request("fine"), TENANT).status == 200
