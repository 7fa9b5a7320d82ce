"""Tenants' own models through a real runtime's HTTP apps: the data plane loads on first use (32
concurrent first calls make one load), a digest mismatch is a 503 with the reason and FAILED in the index,
artefacts come from S3 (a real moto server) or a path, names are per tenant, the budget evicts, and the OIP
repository extension (index, load, unload) lives on the admin port only."""

from __future__ import annotations

import concurrent.futures
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from inference_images.runtime.gateway import MODEL_OWNER_HEADER
from tests.runtime import onnx_graphs
from tests.runtime.own_server import own_headers, start_own_server, tensor
from tests.runtime.test_model_store import S3, s3  # noqa: F401  (the moto_server fixture)

X = tensor("x", "FP32", [1, 4], [0.1, 0.2, 0.3, 0.4])


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


def test_32_concurrent_first_calls_make_one_load(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    server = start_own_server(tmp_path)
    try:
        headers = own_headers("acme", path, sha)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            replies = list(
                pool.map(lambda _: server.infer("/v2/models/router/infer", {"inputs": [X]}, headers), range(32))
            )
        assert [r.status for r in replies] == [200] * 32
        assert len({str(r.body["outputs"]) for r in replies}) == 1
        metrics = server.get("/metrics").body
        assert metric(metrics, "fairshare_runtime_cache_loads_total", tenant="acme", result="ok") == 1
        row = server.row("acme:router")
        assert row["hits"] + row["misses"] == 32 and row["misses"] >= 1 and row["state"] == "ready"
        assert row["owner"] == "acme" and row["bytes"] >= path.stat().st_size and row["load_seconds"] > 0
        # Per tenant: hits, misses, load seconds, resident bytes; requests labelled "own", not per model.
        assert metric(metrics, "fairshare_runtime_cache_hits_total", tenant="acme") == row["hits"]
        assert metric(metrics, "fairshare_runtime_cache_misses_total", tenant="acme") == row["misses"]
        assert metric(metrics, "fairshare_runtime_cache_load_seconds_total", tenant="acme") > 0
        assert metric(metrics, "fairshare_runtime_cache_resident_bytes", tenant="acme") == row["bytes"]
        assert metric(metrics, "fairshare_runtime_requests_total", model="own", version="own", code="200") == 32
        assert metric(metrics, "fairshare_runtime_own_model_requests", model="acme:router", version="1") == 32
    finally:
        server.stop()


def test_digest_mismatch_is_503_with_the_reason_and_failed_in_the_index(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    wrong = hashlib.sha256(b"what the config says").hexdigest()
    server = start_own_server(tmp_path)
    try:
        reply = server.infer("/v2/models/router/infer", {"inputs": [X]}, own_headers("acme", path, wrong))
        assert reply.status == 503
        # The client learns which model failed which check; the server's path and the digests stay in its log.
        # ... by the name it used; the replica's index (operators') qualifies it with its owner.
        assert reply.error == "model 'router' version '1': its artifact failed its integrity check " \
            "(sha256 mismatch)"
        assert str(tmp_path) not in reply.error and wrong not in reply.error and sha not in reply.error
        logged = [r.__dict__.get("detail", "") for r in caplog.records if r.getMessage() == "model failed to load"]
        assert any(str(path) in d and wrong in d and sha in d for d in logged), logged
        assert int(reply.headers["retry-after"]) >= 1
        row = server.row("acme:router")
        assert row["state"] == "failed" and row["reason"] == reply.error.replace("'router'", "'acme:router'")
        # Within the backoff: the same answer, no second download.
        again = server.infer("/v2/models/router/infer", {"inputs": [X]}, own_headers("acme", path, wrong))
        assert again.status == 503 and again.error == reply.error
        metrics = server.get("/metrics").body
        assert metric(metrics, "fairshare_runtime_cache_loads_total", tenant="acme", result="failed") == 1
        # Metadata and readiness say the same.
        ready = server.get("/v2/models/router/ready", own_headers("acme", path, wrong))
        assert ready.status == 503 and ready.body["ready"] is False and ready.body["reason"] == reply.error
        # The replica itself stays ready: one tenant's broken model is not the replica's problem.
        assert server.get("/v2/health/ready").status == 200
    finally:
        server.stop()


def test_models_from_s3_load_through_the_repository_extension_and_serve(
    tmp_path: Path,
    s3: S3,  # noqa: F811
) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx", seed=9)
    uri = s3.put("tenants/acme/router/3/model.onnx", path.read_bytes())
    server = start_own_server(tmp_path)
    try:
        loaded = server.admin(
            "/v2/repository/models/acme:router/load",
            {"parameters": {"artifact": uri, "sha256": sha, "format": "onnx", "version": "3"}},
        )
        assert loaded.status == 200, loaded.body
        assert loaded.body["state"] == "ready" and loaded.body["bytes"] > 0 and loaded.body["hits"] == 0
        reply = server.infer("/v2/models/router/infer", {"inputs": [X]}, own_headers("acme", uri, sha, version="3"))
        assert reply.status == 200
        expected = onnx_graphs.run(path, {"x": np.array([X["data"]], dtype=np.float32)})["logits"]
        np.testing.assert_array_equal(np.array(reply.body["outputs"][0]["data"], dtype=np.float32), expected.ravel())
        assert server.row("acme:router", "3")["hits"] == 1  # the operator's load made it warm
        # (A digest already verified is served from the replica's artefact cache, wherever it points.)
        missing = server.infer(
            "/v2/models/other/infer",
            {"inputs": [X]},
            own_headers("acme", "s3://models/tenants/acme/other/1/model.onnx", "ab" * 32),
        )
        assert missing.status == 503 and "no such object" in missing.error
        assert missing.error.startswith("model 'other' version '1': ")
    finally:
        server.stop()


def test_names_are_per_tenant(tmp_path: Path) -> None:
    acme_path, acme_sha = onnx_graphs.linear(tmp_path / "acme.onnx", seed=1)
    globex_path, globex_sha = onnx_graphs.linear(tmp_path / "globex.onnx", seed=2)
    server = start_own_server(tmp_path)
    try:
        acme = server.infer("/v2/models/intent/infer", {"inputs": [X]}, own_headers("acme", acme_path, acme_sha))
        globex = server.infer(
            "/v2/models/intent/infer", {"inputs": [X]}, own_headers("globex", globex_path, globex_sha)
        )
        assert acme.status == globex.status == 200
        assert acme.body["outputs"] != globex.body["outputs"]
        names = {(r["name"], r["owner"]) for r in server.index() if not r["pinned"]}
        assert names == {("acme:intent", "acme"), ("globex:intent", "globex")}
        # Without the gateway's own-model headers the name is just unknown, as any other.
        plain = server.infer("/v2/models/intent/infer", {"inputs": [X]})
        assert plain.status == 404 and "unknown model 'intent'" in plain.error
    finally:
        server.stop()


def test_a_budget_smaller_than_the_working_set_evicts(tmp_path: Path) -> None:
    graphs = [onnx_graphs.sized(tmp_path / f"m{i}.onnx", 300_000, seed=i) for i in range(3)]
    server = start_own_server(tmp_path, cache_budget_mb=1.5, min_residency_s=0.0)
    try:
        x = tensor("x", "FP32", [1, 1], [1.0])
        for i, (path, sha) in enumerate(graphs):
            reply = server.infer(f"/v2/models/m{i}/infer", {"inputs": [x]}, own_headers("acme", path, sha))
            assert reply.status == 200, reply.body
        states = {r["name"]: r["state"] for r in server.index() if not r["pinned"]}
        assert states == {"acme:m0": "evicted", "acme:m1": "ready", "acme:m2": "ready"}
        metrics = server.get("/metrics").body
        assert metric(metrics, "fairshare_runtime_cache_evictions_total", tenant="acme") == 1
        assert metric(metrics, "fairshare_runtime_cache_resident_bytes", tenant="acme") <= 1.5 * 2**20
        # The evicted model loads again on its next request.
        again = server.infer("/v2/models/m0/infer", {"inputs": [x]}, own_headers("acme", *graphs[0]))
        assert again.status == 200 and server.row("acme:m0")["state"] == "ready"
    finally:
        server.stop()


def test_unload_and_the_extensions_refusals(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    server = start_own_server(tmp_path)
    try:
        assert server.infer("/v2/models/router/infer", {"inputs": [X]}, own_headers("acme", path, sha)).status == 200
        unloaded = server.admin("/v2/repository/models/acme:router/unload")
        assert unloaded.status == 200 and unloaded.body == {"name": "acme:router", "unloaded": 1}
        assert not [r for r in server.index() if r["name"] == "acme:router"]
        assert server.admin("/v2/repository/models/acme:router/unload").status == 404
        pinned = server.admin("/v2/repository/models/classifier/unload")
        assert pinned.status == 400 and "pinned" in pinned.body["error"]
        bad = server.admin("/v2/repository/models/acme:router/load", {"parameters": {"format": "onnx"}})
        assert bad.status == 400 and "version" in bad.body["error"]
        bad = server.admin(
            "/v2/repository/models/acme:router/load",
            {"parameters": {"format": "tflite", "version": "1", "artifact": str(path), "sha256": sha}},
        )
        assert bad.status == 400 and "format 'tflite'" in bad.body["error"]
        catalog = [r for r in server.index() if r["pinned"]]
        assert [(r["name"], r["state"]) for r in catalog] == [("classifier", "ready")]
        assert server.admin("/v2/repository/index", {"ready": True}).status == 200
        # Never on the data plane: Envoy routes there, so a tenant can never reach the extension.
        assert server.request("POST", "/v2/repository/index").status == 404
        # The next request loads the model again.
        assert server.infer("/v2/models/router/infer", {"inputs": [X]}, own_headers("acme", path, sha)).status == 200
    finally:
        server.stop()


def test_bad_gateway_headers_for_an_own_model_are_400s_naming_the_field(tmp_path: Path) -> None:
    path, sha = onnx_graphs.linear(tmp_path / "router.onnx")
    server = start_own_server(tmp_path)
    try:
        cases = [
            ({"x-fairshare-model-sha256": "abc"}, "sha256 must be 64 hex digits"),
            ({"x-fairshare-model-bytes": "-5"}, "artifact size '-5' must be a positive number of bytes"),
            ({"x-fairshare-model-format": "pickle"}, "format 'pickle'"),
            ({"x-fairshare-model-artifact": "relative/model.onnx"}, "must be absolute"),
            ({MODEL_OWNER_HEADER: "acme:evil"}, "owner"),
        ]
        for override, message in cases:
            headers = {**own_headers("acme", path, sha), **override}
            reply = server.infer("/v2/models/router/infer", {"inputs": [X]}, headers)
            assert reply.status == 400 and message in reply.error, (override, reply.body)
        wrong_version = server.infer(
            "/v2/models/router/versions/9/infer", {"inputs": [X]}, own_headers("acme", path, sha)
        )
        assert wrong_version.status == 404 and "unknown version '9'" in wrong_version.error
        other_region = {**own_headers("acme", path, sha), "x-fairshare-region": "eu-west-1"}
        assert server.infer("/v2/models/router/infer", {"inputs": [X]}, other_region).status == 403
    finally:
        server.stop()
