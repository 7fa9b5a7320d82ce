"""End to end through the real Envoy, as a new user with a valid credential: request shapes the runtime must
refuse with a reason, and requests nobody waits for any more, which must never reach the model.

- a body of 20,000 nested arrays is a 400 naming the nesting (it was a 500 "internal error");
- 20,000 rows to the embedder is a 413 naming the limit, before it is queued, and the replica that
  refused it serves another tenant at once (it used to hold the replica past the gateway's timeout);
- a request whose gateway deadline passes while it is queued is a 504 and never runs;
- a request whose client leaves while it is queued never runs and counts as 499 in the runtime.

The last two run on their own platform: one replica of a model with a fixed device time per row
(``lexicon-simulated``) and a short gateway timeout. A request sent straight to the replica (as a
tenant with no gateway deadline) holds the worker while the requests under test, sent through Envoy,
wait behind it; the runtime's metrics say what happened to them.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import infer_body
from inference_images.runtime.models.minilm import LIMITS as EMBEDDER_LIMITS
from inference_images.runtime.models.simulated import BATCH_MS_ENV, ROW_MS_ENV, SimulatedDeviceModel
from tests.e2e.conftest import RunningPlatform, eventually, post, served_by
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

pytestmark = pytest.mark.e2e
US, EU = "us-east-1", "eu-west-1"


def test_a_body_of_20000_nested_arrays_is_a_400_naming_the_nesting(running: RunningPlatform) -> None:
    url = running.url(US, "/v2/models/classifier/infer")
    reply = post(url, b"[" * 20_000 + b"]" * 20_000, running.token("globex"))
    assert reply.status == 400, reply.body
    assert "nests arrays and objects more than 32 levels deep" in reply.body["error"]
    assert post(url, infer_body(["fine"]), running.token("globex")).status == 200


@pytest.mark.slow
def test_20000_rows_to_the_embedder_is_a_413_and_the_replica_serves_another_tenant_at_once(
    running: RunningPlatform,
) -> None:
    url = running.url(EU, "/v2/models/embedder/infer")
    texts = [f"short text number {i}" for i in range(20_000)]
    body = infer_body(texts)
    assert len(body) < 1024 * 1024  # well under the body limit: it is the rows that are refused
    refused = post(url, body, running.token("acme"))
    assert refused.status == 413, refused.body
    assert f"has 20000 rows; model 'embedder' accepts at most {EMBEDDER_LIMITS.max_rows} rows" in refused.body["error"]
    replica = served_by(running.platform, refused)
    assert replica is not None

    # Another tenant, on that very replica (the pool has two; least-request spreads them).
    answered: list[tuple[int, str | None]] = []

    def served_there() -> bool:
        reply = post(url, infer_body(["hello"]), running.token("initech"))
        answered.append((reply.status, served_by(running.platform, reply)))
        return answered[-1][1] == replica

    assert eventually(served_there, timeout=30, interval=0.05), answered
    assert {status for status, _ in answered} == {200}, answered


# -- deadlines and departed clients --------------------------------------------------------------------

TIMEOUT_S = 4.0  # the gateway's route timeout on the deadline platform
# Device time per row of the simulated model: slow enough that a hold fits in one predict call (its chunk
# is 64 rows), since between two calls the scheduler lets a tenant owed service run first.
ROW_MS = 100.0
MODEL = "classifier"
TENANTS = ("late", "leaver")


@dataclass
class DeadlinePlatform:
    platform: LocalPlatform
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.platform.gateway_url(US) + f"/v2/models/{MODEL}/infer"

    @property
    def replica(self) -> str:
        replica = self.platform.replicas[0]
        return f"http://{self.platform.opts.host}:{replica.port}"

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(self.replica + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def sample(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 when there are none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and wanted <= ls)

    def hold(self, seconds: float) -> threading.Thread:
        """Occupy the replica's worker for ``seconds``: a request sent to it directly (never via Envoy), so
        it has no gateway deadline and its client stays. Returns once it runs."""
        rows = int(seconds * 1000 / ROW_MS)
        chunk = SimulatedDeviceModel.request_limits.chunk_rows
        assert chunk is not None and rows <= chunk, "a hold in several calls would let the other tenants in between"
        request = urllib.request.Request(
            self.replica + f"/v2/models/{MODEL}/infer",
            data=infer_body(["hold"] * rows),
            headers={"content-type": "application/json", "x-fairshare-tenant": "holder"},
            method="POST",
        )
        before = self.sample("fairshare_runtime_queue_wait_seconds_count", tenant="holder")

        def send() -> None:
            with urllib.request.urlopen(request, timeout=60) as resp:
                assert resp.status == 200

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        # Picked to run: its wait was observed and nothing of it is queued.
        assert eventually(lambda: self.sample("fairshare_runtime_queue_wait_seconds_count", tenant="holder") > before,
                          timeout=30)
        return thread

    def queued(self, tenant: str) -> bool:
        return self.sample("fairshare_runtime_tenant_queue_depth", tenant=tenant) >= 1


@pytest.fixture(scope="module")
def deadlines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeadlinePlatform]:
    root = tmp_path_factory.mktemp("deadlines")
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True)
    port = free_port()
    (cfg / "platform.yaml").write_text(f"gateway:\n  request_timeout_seconds: {TIMEOUT_S}\n")
    (cfg / "tiers.yaml").write_text(
        "tiers:\n  pro:\n    weight: 1\n"
        "    quotas: {concurrency: 8, requests_per_second: 100, tokens_per_minute: 1000000, gpus: 0}\n")
    (cfg / "regions.yaml").write_text(
        f"regions:\n  - id: {US}\n    gateway_port: {port}\n    pools: [{{name: sim, replicas: 1}}]\n")
    (cfg / "models.yaml").write_text(
        f"models:\n  {MODEL}:\n    kind: classifier\n    versions:\n"
        "      v1: {pool: sim, loader: lexicon-simulated}\n")
    for tenant in TENANTS:
        (cfg / "tenants" / f"{tenant}.yaml").write_text(
            f"id: {tenant}\ntier: pro\nregions: {{home: {US}, allowed: [{US}]}}\n"
            f"models:\n  {MODEL}: {{split: {{v1: 100}}}}\n")
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(
        config_dir=cfg, state_dir=state, xds_port=free_port(), status_port=free_port(),
        runtime_env=((BATCH_MS_ENV, "0"), (ROW_MS_ENV, f"{ROW_MS:g}")),
    ))
    platform.start()
    try:
        assert platform.config is not None
        key = SigningKey.load_or_create(state)
        tokens = {t: issue_token(key, platform.config.platform.auth, t) for t in TENANTS}
        yield DeadlinePlatform(platform, tokens)
    finally:
        platform.stop()


def test_a_request_whose_deadline_passes_while_queued_is_a_504_and_never_runs(deadlines: DeadlinePlatform) -> None:
    timed_out = deadlines.sample("fairshare_runtime_requests_total", code="504")
    holder = deadlines.hold(TIMEOUT_S + 2)  # longer than the gateway waits for anyone behind it
    reply = post(deadlines.url, infer_body(["too late"]), deadlines.tokens["late"])
    assert reply.status == 504, reply.body
    holder.join(60)
    # Once the worker is free the runtime drops it for its deadline, before the model.
    assert eventually(lambda: deadlines.sample("fairshare_runtime_scheduled_requests_total",
                                               tenant="late", outcome="expired") == 1, timeout=30)
    assert deadlines.sample("fairshare_runtime_requests_total", code="504") == timed_out + 1
    assert deadlines.sample("fairshare_runtime_service_seconds_total", tenant="late") == 0
    # And the tenant is served as usual afterwards.
    assert post(deadlines.url, infer_body(["good"]), deadlines.tokens["late"]).status == 200


def test_a_request_whose_client_leaves_while_queued_never_runs_and_counts_as_499(deadlines: DeadlinePlatform) -> None:
    left = deadlines.sample("fairshare_runtime_requests_total", code="499")
    holder = deadlines.hold(TIMEOUT_S / 2)  # ends well before the request's deadline
    body = infer_body(["nobody waits"])
    gateway = deadlines.platform.config.regions[US].gateway_port  # type: ignore[union-attr]
    with socket.create_connection((deadlines.platform.opts.host, gateway)) as client:
        client.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {deadlines.tokens['leaver']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert eventually(lambda: deadlines.queued("leaver"), timeout=30)
    # The client has gone while its request waits; Envoy cancels it upstream.
    holder.join(60)
    assert eventually(lambda: deadlines.sample("fairshare_runtime_requests_total", code="499") == left + 1,
                      timeout=30)
    assert deadlines.sample("fairshare_runtime_scheduled_requests_total", tenant="leaver", outcome="cancelled") == 1
    assert deadlines.sample("fairshare_runtime_service_seconds_total", tenant="leaver") == 0
    assert post(deadlines.url, infer_body(["good"]), deadlines.tokens["leaver"]).status == 200
