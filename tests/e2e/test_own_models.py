"""Tenants' own models through the real Envoy (docs/design/0003): acme's ONNX ticket router and globex's
head over the shared embedder, both trained by bench/example_models/train.py and declared in the example
config; isolation between tenants, the repository extension out of the gateway's reach, digest checks,
warm routing, and add / split / remove / refusal live."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.example_models.train import featurize
from tests.e2e.conftest import RunningPlatform, applied, eventually, get, post, served_by

pytestmark = pytest.mark.e2e
US = "us-east-1"
MODELS = Path(__file__).resolve().parents[2] / "config" / "models"
FEATURES = json.loads((MODELS / "acme/ticket-router/features.json").read_text())
TICKETS = ["I was charged twice, please refund my invoice", "my parcel never arrived, tracking is stuck",
           "the app crashes with a 500 error on upload", "I forgot my password and cannot log in"]


def features(texts: list[str]) -> np.ndarray:
    return featurize(texts, FEATURES["vocabulary"])


def tensor_body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "features", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()


def text_body(texts: list[str]) -> bytes:
    return json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                   "data": texts}]}).encode()


def outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def edit_tenant(running: RunningPlatform, tenant: str, change) -> None:  # type: ignore[no-untyped-def]
    path = running.tenant_file(tenant)
    spec = yaml.safe_load(path.read_text())
    change(spec)
    # Relative artifacts stay relative to the tenant file; write absolute ones for clarity in tests.
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def published(running: RunningPlatform, before: str | None) -> bool:
    status = running.platform.status()
    return bool(status["last_reload"]["ok"]) and status["config_version"] != before


def fairshare_models(running: RunningPlatform, *extra: str) -> dict[str, Any]:
    from xds_server.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["models", "--config", str(running.config_dir), "--json", "--state",
                     str(running.platform.opts.state_dir),  # its local CA: the admin ports need mutual TLS
                     "--status-port", str(running.platform.opts.status_port), *extra]) == 0
    return dict(json.loads(out.getvalue()))


def test_onnx_model_answers_exactly_what_onnxruntime_computes(running: RunningPlatform) -> None:
    import onnxruntime as ort

    x = features(TICKETS)
    reply = post(running.url(US, "/v2/models/ticket-router/versions/1/infer"), tensor_body(x), running.token("acme"))
    assert reply.status == 200, reply.body
    assert reply.body["model_version"] == "1"
    got = outputs(reply.body)
    session = ort.InferenceSession(str(MODELS / "acme/ticket-router/1/model.onnx"), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"features": x})
    np.testing.assert_array_equal(got["label"], label)
    np.testing.assert_array_equal(got["probabilities"].astype(np.float32), probabilities)
    assert [FEATURES["classes"][i] for i in label] == ["billing", "shipping", "technical", "account"]


def test_metadata_is_the_graphs_signature(running: RunningPlatform) -> None:
    reply = get(running.url(US, "/v2/models/ticket-router"), running.token("acme"))
    assert reply.status == 200, reply.body
    meta = reply.body
    assert meta["versions"] == ["1", "2"]  # every version of acme's model, whichever the split picked
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("features", "FP32", [-1, len(FEATURES["vocabulary"])])]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label": "INT64", "probabilities": "FP32"}


def test_head_over_the_embedder_answers(running: RunningPlatform) -> None:
    reply = post(running.url(US, "/v2/models/intent/infer"), text_body(TICKETS), running.token("globex"))
    assert reply.status == 200, reply.body
    got = outputs(reply.body)
    classes = ["billing", "shipping", "technical", "account"]
    assert [classes[i] for i in got["label"]] == classes
    np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_tritonclient_calls_a_tenants_model(running: RunningPlatform) -> None:
    import onnxruntime as ort
    import tritonclient.http as httpclient

    url = running.platform.gateway_url(US).removeprefix("http://")

    def auth(tenant: str) -> dict[str, str]:
        # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into the one given.
        return {"Authorization": f"Bearer {running.token(tenant)}"}

    client = httpclient.InferenceServerClient(url=url)
    try:
        # The server-level calls a client makes first: the gateway answers them itself (health without a
        # credential, as a load balancer would ask), since behind it there is no one server.
        assert client.is_server_live() and client.is_server_ready()
        server = client.get_server_metadata(headers=auth("acme"))
        assert server["name"] == "fairshare-gateway" and "binary_tensor_data" in server["extensions"]
        meta = client.get_model_metadata("ticket-router", headers=auth("acme"))
        assert meta["inputs"][0]["name"] == "features"
        x = features(TICKETS)
        tensor = httpclient.InferInput("features", list(x.shape), "FP32")
        # tritonclient's defaults: binary tensor data in the request and for every output of the response.
        tensor.set_data_from_numpy(x)
        result = client.infer("ticket-router", [tensor], model_version="1", headers=auth("acme"))
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        session = ort.InferenceSession(str(MODELS / "acme/ticket-router/1/model.onnx"),
                                       providers=["CPUExecutionProvider"])
        label, probabilities = session.run(["label", "probabilities"], {"features": x})
        np.testing.assert_array_equal(result.as_numpy("label"), label)
        np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)

        # Text as binary BYTES, to globex's head over the embedder.
        text = httpclient.InferInput("text", [len(TICKETS)], "BYTES")
        text.set_data_from_numpy(np.array(TICKETS, dtype=np.object_))
        intent = client.infer("intent", [text], headers=auth("globex"))
        assert intent.as_numpy("label").tolist() == [0, 1, 2, 3]

        # JSON tensors throughout still work.
        tensor.set_shape(list(x[:2].shape))
        tensor.set_data_from_numpy(x[:2], binary_data=False)
        plain = client.infer("ticket-router", [tensor], model_version="1", headers=auth("acme"),
                             outputs=[httpclient.InferRequestedOutput("label", binary_data=False)])
        assert plain.get_output("label")["data"] == [0, 1]
    finally:
        client.close()


def test_another_tenant_gets_the_404_of_an_unknown_model(running: RunningPlatform) -> None:
    x = tensor_body(features(TICKETS[:1]))
    for tenant in ("hooli", "globex"):
        theirs = post(running.url(US, "/v2/models/ticket-router/infer"), x, running.token(tenant))
        unknown = post(running.url(US, "/v2/models/no-such-model/infer"), x, running.token(tenant))
        assert (theirs.status, theirs.body) == (unknown.status, unknown.body) == (404, unknown.body)
        assert "ticket-router" not in json.dumps(theirs.body)
    # acme's own name space: acme has no model called intent (globex's).
    assert post(running.url(US, "/v2/models/intent/infer"), text_body(["x"]), running.token("acme")).status == 404


def test_repository_extension_is_not_reachable_through_the_gateway(running: RunningPlatform) -> None:
    for path in ("/v2/repository/index", "/v2/repository/models/acme:ticket-router/unload",
                 "/v2/repository/models/ticket-router/load"):
        reply = post(running.url(US, path), b"{}", running.token("acme"))
        assert reply.status == 404, (path, reply.body)


def test_one_model_lands_on_one_replica(running: RunningPlatform, unthrottled) -> None:  # type: ignore[no-untyped-def]
    unthrottled("acme")  # 30 calls back to back: near acme's burst, and a 429 carries no replica
    x = tensor_body(features(TICKETS[:1]))
    # Which replica answered is in the gateway's access log (never on the response).
    replies = [post(running.url(US, "/v2/models/ticket-router/versions/1/infer"), x, running.token("acme"))
               for _ in range(30)]
    replicas = Counter(served_by(running.platform, reply) for reply in replies)
    assert len(replicas) == 1 and None not in replicas, replicas
    # Metadata and ready calls for the model hash to the same replica (the model name from :path).
    metadata = get(running.url(US, "/v2/models/ticket-router/versions/1"), running.token("acme"))
    assert metadata.status == 200 and served_by(running.platform, metadata) in replicas


def test_models_table_counts_ready_replicas_per_region(running: RunningPlatform) -> None:
    """`fairshare models` as a person reads it: a count per region (classifier v2 is us-east-1's only),
    rows a terminal holds, nothing on stderr when every replica answers; with --tenant, the tenant's split
    in the regions it is served."""
    import contextlib

    from xds_server.cli import main

    def table(*extra: str) -> tuple[dict[str, str], str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main(["models", "--config", str(running.config_dir), "--state",
                         str(running.platform.opts.state_dir),
                         "--status-port", str(running.platform.opts.status_port), *extra]) == 0
        lines = out.getvalue().splitlines()
        assert max(len(line) for line in lines) <= 130, out.getvalue()
        return {line.split()[0]: line for line in lines[1:]}, err.getvalue()

    rows, err = table()
    assert err == ""
    assert "eu-west-1 2/2@v1, us-east-1 2/2  " in rows["classifier"], rows["classifier"]
    assert rows["classifier"].endswith("ready")
    rows, err = table("--tenant", "globex")
    assert err == "" and set(rows) == {"classifier", "globex:intent"}
    assert "v1=80% v2=20%  " in rows["classifier"] and "  us-east-1 2/2  " in rows["classifier"]


def test_a_wrong_digest_is_refused_and_an_artifact_changed_after_loading_is_503(
        running: RunningPlatform, restore_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = running.platform.status()["config_version"]
    source = running.config_dir / "models" / "acme/ticket-router/1/model.onnx"  # acme's own folder
    # Declared with a wrong digest: the load refuses it, naming the field, and the last good config serves.
    edit_tenant(running, "acme", lambda s: s["own_models"].update({"tampered": {
        "format": "onnx", "pool": "cpu-general",
        "versions": {"1": {"artifact": str(source), "sha256": "ab" * 32}}}}))
    assert eventually(lambda: not running.platform.status()["last_reload"]["ok"], timeout=30)
    status = running.platform.status()
    assert "own_models.tampered.versions.1.sha256" in status["last_reload"]["error"]
    assert status["config_version"] == before
    # Declared right, then changed on disk after the load checked it: the runtime checks it again as it loads it.
    copy = running.config_dir / "models" / "acme" / "tampered" / "model.onnx"  # in acme's own folder
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    edit_tenant(running, "acme", lambda s: s["own_models"]["tampered"]["versions"]["1"].update(
        {"artifact": str(copy), "sha256": digest}))
    assert eventually(lambda: published(running, before), timeout=30)
    data = copy.read_bytes()
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the same size: its sha256 is what catches it
    reply = post(running.url(US, "/v2/models/tampered/infer"), tensor_body(features(TICKETS[:1])),
                 running.token("acme"))
    assert reply.status == 503, reply.body
    error = reply.body["error"]
    assert error.startswith("model 'tampered' version '1': ") and "integrity" in error
    assert str(copy) not in error and digest not in error
    # Its 503s are the model's, not the replica's: the own-model clusters every tenant shares eject no
    # replica for them (they did, moving other tenants' models off their warm replicas).
    for _ in range(8):
        assert post(running.url(US, "/v2/models/tampered/infer"), tensor_body(features(TICKETS[:1])),
                    running.token("acme")).status == 503
    stats = running.platform.envoys[US].admin_get(
        "/stats?filter=^cluster\\.own\\..*\\.outlier_detection\\.ejections_enforced_total$")
    assert stats.strip() and all(line.endswith(": 0") for line in stats.strip().splitlines()), stats
    # Other models keep serving.
    ok = post(running.url(US, "/v2/models/ticket-router/versions/1/infer"), tensor_body(features(TICKETS[:1])),
              running.token("acme"))
    assert ok.status == 200
    shutil.copyfile(source, copy)  # `fairshare models` loads the config from disk, which checks the digest too
    row = next(m for m in fairshare_models(running, "--tenant", "acme")["models"] if m["model"] == "acme:tampered")
    assert any(r["state"].upper() == "FAILED" and "sha256" in r["reason"] for r in row["resident"]), row


def test_add_split_and_remove_live(running: RunningPlatform, restore_config) -> None:  # type: ignore[no-untyped-def]
    token, x = running.token("acme"), tensor_body(features(TICKETS[:1]))
    url = running.url(US, "/v2/models/router-b/infer")
    assert post(url, x, token).status == 404
    before = running.platform.status()["config_version"]
    router = yaml.safe_load(running.tenant_file("acme").read_text())["own_models"]["ticket-router"]

    def add(spec: dict[str, Any]) -> None:
        spec["own_models"]["router-b"] = {**router, "split": {"1": 100, "2": 0}}

    edit_tenant(running, "acme", add)
    assert eventually(lambda: post(url, x, token).status == 200, timeout=30)
    assert {post(url, x, token).body["model_version"] for _ in range(10)} == {"1"}

    # Canary: all traffic to version 2, without a restart.
    edit_tenant(running, "acme", lambda s: s["own_models"]["router-b"].update({"split": {"1": 0, "2": 100}}))
    assert eventually(lambda: {post(url, x, token).body.get("model_version") for _ in range(10)} == {"2"},
                      timeout=30)

    # Removing a version the model no longer splits to: that version is unloaded, the other keeps serving.
    assert resident_versions(running, "acme:router-b") == {"1", "2"}
    current = running.platform.status()["config_version"]
    edit_tenant(running, "acme", lambda s: (s["own_models"]["router-b"]["versions"].pop("1"),
                                            s["own_models"]["router-b"].update({"split": {"2": 100}})))
    assert eventually(lambda: published(running, current), timeout=30)
    assert eventually(lambda: resident_versions(running, "acme:router-b") == {"2"}, timeout=30)
    assert post(running.url(US, "/v2/models/router-b/versions/1/infer"), x, token).status == 404
    assert post(url, x, token).body["model_version"] == "2"

    # Removal: 404 at once at the gateway, and unloaded from the replicas that held it.
    current, edited_at = running.platform.status()["config_version"], time.time()
    edit_tenant(running, "acme", lambda s: s["own_models"].pop("router-b"))
    # Every Envoy has applied the removal (published alone does not mean Envoy has it yet: a request in
    # between was still served, once in a fresh-clone CI run).
    applied(running, after=edited_at, other_than=current)
    assert post(url, x, token).status == 404
    assert before != current
    assert eventually(lambda: not resident_versions(running, "acme:router-b"), timeout=30)


def resident_versions(running: RunningPlatform, qualified: str) -> set[str]:
    """The versions of an own model READY on any replica, as each replica's repository index says."""
    from xds_server.controlplane import inventory, repository
    from xds_server.controlplane.admin_client import AdminClient

    eps = inventory.endpoints_from_status(running.platform.status())
    client = AdminClient.for_operator(running.platform.config, None, running.platform.opts.state_dir)
    return {str(e["version"]) for pool in eps.by_pool.values() for ep in pool
            for e in repository.index(ep, client=client)
            if e.get("name") == qualified and str(e.get("state", "")).upper() == "READY"}


def test_policy_refusal_is_rejected_whole_and_the_last_good_config_serves(
        running: RunningPlatform, restore_config) -> None:  # type: ignore[no-untyped-def]
    serving = running.platform.status()["config_version"]
    edit_tenant(running, "globex", lambda s: s["own_models"].update({"stolen": {
        "format": "onnx", "pool": "cpu-general",
        "versions": {"1": {"artifact": "s3://fairshare-us-east-1-models/tenants/acme/ticket-router/1/model.onnx",
                           "sha256": "ab" * 32}}}}))
    assert eventually(lambda: running.platform.status()["last_reload"]["ok"] is False, timeout=30)
    status = running.platform.status()
    error = status["last_reload"]["error"]
    assert "globex.yaml: own_models.stolen.versions.1.artifact" in error
    assert "own-model-artifact-outside-tenant-prefix" in error
    assert status["config_version"] == serving
    reply = post(running.url(US, "/v2/models/intent/infer"), text_body(["refund please"]), running.token("globex"))
    assert reply.status == 200
