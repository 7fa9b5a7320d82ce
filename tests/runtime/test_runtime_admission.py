"""Admission and scheduling through the runtime's HTTP API: 429 with Retry-After past a tenant's bound,
the token cost header, the scheduler's per-tenant metrics, and the policy chosen on the command line."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference_images.runtime.__main__ import parse_settings
from inference_images.runtime.models.base import Tensor
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.models.registry import default_loaders
from inference_images.runtime.scheduling import BatchLimit
from tests.runtime.conftest import RuntimeServer, start_server, text_request

GATE = threading.Event()


class GatedModel(LexiconSentimentModel):
    """The lexicon, but each forward pass waits for the test to open the gate."""

    def predict(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        assert GATE.wait(30), "gate never opened"
        return super().predict(inputs)


@pytest.fixture
def gated_server() -> Iterator[RuntimeServer]:
    loaders = default_loaders()
    loaders.register("gated", lambda name, version: GatedModel(name, version, negation=False))
    GATE.clear()
    server = start_server("slow:v1:gated", "classifier:v1:lexicon", loaders=loaders, default_max_queue=4)
    server.wait_ready(10)
    yield server
    GATE.set()
    server.stop()


def metric_lines(server: RuntimeServer, prefix: str) -> list[str]:
    return [line for line in server.get("/metrics").body.splitlines() if line.startswith(prefix)]


def queue_depth(server: RuntimeServer, tenant: str) -> float:
    lines = metric_lines(server, f'fairshare_runtime_tenant_queue_depth{{tenant="{tenant}"}}')
    return float(lines[0].split()[-1]) if lines else 0.0


def wait_for(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_tenant_past_its_queue_bound_gets_429_at_once_and_others_still_get_in(gated_server: RuntimeServer) -> None:
    slow = "/v2/models/slow/infer"
    flood = {"x-fairshare-tenant": "flood", "x-fairshare-max-queue": "2"}
    calm = {"x-fairshare-tenant": "calm"}
    with ThreadPoolExecutor(8) as pool:
        running = pool.submit(gated_server.infer, slow, text_request("first"), flood)
        wait_for(lambda: metric_lines(gated_server, "fairshare_runtime_queue_depth 1.0") != [])
        queued = [pool.submit(gated_server.infer, slow, text_request("queued"), flood) for _ in range(2)]
        wait_for(lambda: queue_depth(gated_server, "flood") == 2)

        refused = gated_server.infer(slow, text_request("one too many"), flood)
        assert refused.status == 429
        assert "tenant 'flood'" in refused.error and "2 requests queued" in refused.error
        assert int(refused.headers["retry-after"]) >= 1

        # The bound is per tenant: another tenant is queued (the default bound, 4, applies to it).
        calm_reply = pool.submit(gated_server.infer, slow, text_request("calm"), calm)
        wait_for(lambda: queue_depth(gated_server, "calm") == 1)
        GATE.set()
        replies = [running.result(30), *(f.result(30) for f in queued), calm_reply.result(30)]
    assert [r.status for r in replies] == [200] * 4

    text = gated_server.get("/metrics").body
    assert 'fairshare_runtime_scheduled_requests_total{outcome="rejected_queue_full",tenant="flood"} 1.0' in text
    assert 'fairshare_runtime_scheduled_requests_total{outcome="ok",tenant="flood"} 3.0' in text
    assert 'fairshare_runtime_queue_wait_seconds_count{tenant="calm"} 1.0' in text
    assert 'fairshare_runtime_tenant_queue_depth{tenant="flood"} 0.0' in text


def test_a_malformed_queue_bound_is_400(gated_server: RuntimeServer) -> None:
    reply = gated_server.infer(
        "/v2/models/classifier/infer",
        text_request("good"),
        {"x-fairshare-tenant": "t", "x-fairshare-max-queue": "lots"},
    )
    assert reply.status == 400 and "x-fairshare-max-queue" in reply.error


def test_every_answer_reports_its_token_cost(lexicon_server: RuntimeServer) -> None:
    reply = lexicon_server.infer("/v2/models/classifier/infer", text_request("I love this, it is great", "bad"))
    assert reply.status == 200
    assert reply.headers["x-fairshare-cost-tokens"] == "7"  # words, for the lexicon


def test_policy_batches_and_queue_bound_from_the_command_line() -> None:
    base = ["--region", "r", "--pool", "p", "--model", "c:v1:lexicon"]
    settings, _ = parse_settings(base)
    assert settings.scheduler == "wfq" and settings.default_max_queue == 64 and settings.batch_limits == ()
    settings, _ = parse_settings([*base, "--scheduler", "fifo", "--max-queue-default", "8", "--batch", "c:16:5"])
    assert settings.scheduler == "fifo" and settings.default_max_queue == 8
    ((model, limit),) = settings.batch_limits
    assert model == "c" and limit.max_size == 16 and limit.max_wait_s == pytest.approx(0.005)
    for bad in (["--scheduler", "random"], ["--batch", "c:0"], ["--batch", "c"], ["--max-queue-default", "0"]):
        with pytest.raises(SystemExit):
            parse_settings([*base, *bad])


def test_batched_requests_each_get_their_own_answer_and_token_count() -> None:
    loaders = default_loaders()
    loaders.register("gated", lambda name, version: GatedModel(name, version, negation=False))
    GATE.clear()
    server = start_server("slow:v1:gated", loaders=loaders, batch_limits=(("slow", BatchLimit(8)),))
    try:
        server.wait_ready(10)
        texts = [("great", "positive"), ("awful awful", "negative"), ("a plain table", "neutral")]
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(
                server.infer, "/v2/models/slow/infer", text_request("hold"), {"x-fairshare-tenant": "t0"}
            )
            wait_for(lambda: metric_lines(server, "fairshare_runtime_queue_depth 1.0") != [])
            # Three tenants' requests queue behind the first and then share one forward pass.
            futures = [
                pool.submit(server.infer, "/v2/models/slow/infer", text_request(text), {"x-fairshare-tenant": f"t{i}"})
                for i, (text, _) in enumerate(texts, start=1)
            ]
            wait_for(lambda: metric_lines(server, "fairshare_runtime_queue_depth 4.0") != [])
            GATE.set()
            replies = [first.result(30), *(f.result(30) for f in futures)]
        assert [r.status for r in replies] == [200] * 4
        for reply, (text, label) in zip(replies[1:], texts, strict=True):
            assert reply.body["outputs"][0]["data"] == [label] and reply.body["outputs"][0]["shape"] == [1]
            assert reply.headers["x-fairshare-cost-tokens"] == str(len(text.split()))
        text = server.get("/metrics").body
        assert 'fairshare_runtime_batch_size_bucket{le="4.0",model="slow"} 2.0' in text  # [1] then [3]
        assert 'fairshare_runtime_batch_size_count{model="slow"} 2.0' in text
    finally:
        GATE.set()
        server.stop()
