"""`fairshare tenant offboard` against the running platform (real control plane, Envoy and runtime) and a
moto server: under load the tenant's requests turn to refusals while the other tenant sees no error,
nothing of it stays stored (artifacts in every version, counters, the loaded model, secrets scheduled for
deletion), and the receipt verifies with the JWKS and fails once altered. Then the refusals: an unknown
tenant, a tenant other traffic is pinned to, the config flow without the mark; and a re-run after a step
failed."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_images.runtime.models.artifacts import default_cache_dir
from inference_images.runtime.pii.keys import key_file
from tests.e2e.conftest import eventually, post
from tests.offboarding.conftest import BUCKET, REPO_MODEL, OffboardPlatform
from xds_server.auth.tokens import UnknownTenant, issue_for_config
from xds_server.cli import main
from xds_server.config import load_config
from xds_server.controlplane import inventory, repository
from xds_server.controlplane.admin_client import AdminClient
from xds_server.local.keys import keys_dir
from xds_server.offboard.run import state_path

CLASSIFY = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                   "data": ["where is my parcel"]}]}).encode()
REFUSED = {401, 403, 404}


def router_body() -> bytes:
    return json.dumps({"inputs": [{"name": "features", "shape": [1, 96], "datatype": "FP32",
                                   "data": [0.0] * 96}]}).encode()


def versions(s3: Any, tenant: str) -> list[str]:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=f"tenants/{tenant}/")
    return [f"{v['Key']}@{v['VersionId']}" for p in pages for kind in ("Versions", "DeleteMarkers")
            for v in p.get(kind, [])]


def held(p: OffboardPlatform, tenant: str) -> set[str]:
    eps = inventory.endpoints_from_status(p.platform.status())
    client = AdminClient.for_operator(p.platform.config, None, p.state_dir)
    return {str(e["name"]) for pool in eps.by_pool.values() for ep in pool for e in repository.index(ep, client=client)
            if str(e.get("name", "")).startswith(f"{tenant}:")}


class Load(threading.Thread):
    """Back-to-back calls of one tenant; every reply's status in order."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.statuses = url, token, []  # type: ignore[var-annotated]
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.statuses.append(post(self.url, CLASSIFY, self.token).status)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_offboarding_under_load_removes_everything_and_the_receipt_verifies(
        offboard_platform: OffboardPlatform, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = offboard_platform
    s3, sm = p.client("s3"), p.client("secretsmanager")
    leaver, stayer = p.token("leaver"), p.token("stayer")
    # Before: the own model loads from the bucket and answers; counters exist for leaver's calls.
    reply = post(p.url("/v2/models/router/infer"), router_body(), leaver)
    assert reply.status == 200, reply.body
    assert held(p, "leaver") == {"leaver:router"}
    assert len(versions(s3, "leaver")) == 6  # 2 keys x 2 uploads, a deleted object and its delete marker

    loads = {t: Load(p.url("/v2/models/classifier/infer"), tok) for t, tok in (("leaver", leaver), ("stayer", stayer))}
    for load in loads.values():
        load.start()
    assert eventually(lambda: all(len(load.statuses) >= 20 for load in loads.values()), timeout=30)

    rc, out, err = run_cli(capsys, *p.cli("leaver", "--yes", "--json"))
    assert rc == 0, err
    # The tenant's own calls turn to refusals (no route scope holds it) and stay refused.
    assert eventually(lambda: loads["leaver"].statuses[-1] in REFUSED, timeout=10)
    n = len(loads["leaver"].statuses)
    assert eventually(lambda: len(loads["leaver"].statuses) >= n + 20, timeout=30)
    for load in loads.values():
        load.stop.set()
        load.join(30)
    # Served, then refused for good, never served again once refused. The tenant's clusters leave Envoy
    # only after its routes (delta xDS holds the removal until the routes are ACKed), so only a call in
    # flight across the change can find its cluster gone (503 "no cluster": its route was picked before,
    # the rate-limit check ran while the cluster went); this load has one call in flight at a time.
    statuses = loads["leaver"].statuses
    first = next(i for i, s in enumerate(statuses) if s != 200)
    refused = next(i for i, s in enumerate(statuses) if s in REFUSED)
    assert set(statuses[:first]) == {200}, statuses
    assert statuses[first:refused] in ([], [503]), statuses[first:refused + 3]
    assert set(statuses[refused:]) <= REFUSED, statuses[refused:]
    # The other tenant saw no error while it happened.
    assert set(loads["stayer"].statuses) == {200}, sorted(set(loads["stayer"].statuses))

    result = json.loads(out)
    body = result["receipt"]
    steps = {s["step"]: s for s in body["steps"]}
    assert list(steps) == ["mark", "routes", "tokens", "models", "artifacts", "counters", "secrets"]
    # Nothing of leaver stays: every artifact version and marker, the loaded model, its counters.
    assert versions(s3, "leaver") == []
    assert steps["artifacts"]["buckets"][0]["versions_deleted"] == 6
    assert len(versions(s3, "stayer")) == 1 and len(versions(s3, "retry")) == 6
    assert held(p, "leaver") == set()
    # ... and the verified copy of its artefact on the replica's disk (not left for the cache's LRU).
    digest = hashlib.sha256(REPO_MODEL.read_bytes()).hexdigest()
    assert steps["models"]["artifact_digests"] == [digest]
    assert [r["purged_copies"] for r in steps["models"]["replicas"]] == [1]
    assert not (default_cache_dir() / digest).exists()
    assert steps["counters"]["deleted"] >= 1
    again = urllib.request.Request(f"http://127.0.0.1:{p.status_port}/offboard/leaver/counters", method="DELETE")
    with urllib.request.urlopen(again, timeout=10) as resp:
        assert json.load(resp)["deleted"] == 0
    # Its secret is scheduled for deletion with the recovery window; stayer's is untouched.
    gone = sm.describe_secret(SecretId="fairshare/tenants/leaver/pseudonymisation-key")
    assert gone.get("DeletedDate") is not None
    assert steps["secrets"]["recovery_window_days"] == 30
    assert sm.describe_secret(SecretId="fairshare/tenants/stayer/pseudonymisation-key").get("DeletedDate") is None
    # So is the local platform's stand-in for it, the key file `fairshare run` wrote.
    assert steps["secrets"]["local_key_deleted"] is True
    assert not key_file(keys_dir(p.state_dir), "leaver").exists() and key_file(keys_dir(p.state_dir), "stayer").exists()
    # No token is issued for it any more.
    with pytest.raises(UnknownTenant, match="offboarded"):
        issue_for_config(load_config(p.config_dir), p.key, "leaver")
    # The offboarding is in the audit trail, with the receipt's digest and no tenant data.
    done = json.loads(state_path(p.state_dir, "leaver").read_text())["steps"]
    assert done["receipt"]["audit"]["recorded"] is True
    audit = [json.loads(line) for line in (p.state_dir / "audit" / "audit.jsonl").read_text().splitlines()]
    record = next(r for r in audit if r["kind"] == "tenant.offboarded")
    assert record["tenants"] == ["leaver"] and len(record["receipt_sha256"]) == 64

    # The receipt verifies with the JWKS the gateway uses (URL and a saved file) ...
    jwks_url = f"http://127.0.0.1:{p.status_port}/.well-known/jwks.json"
    signed = Path(result["receipt_file"])
    # The digest the trail recorded is the file's, as `sha256sum` prints it.
    assert hashlib.sha256(signed.read_bytes()).hexdigest() == record["receipt_sha256"]
    rc, out, err = run_cli(capsys, "receipt", "verify", str(signed), "--jwks", jwks_url)
    assert rc == 0 and "receipt OK: tenant leaver" in out, err
    saved = tmp_path / "jwks.json"
    saved.write_text(urllib.request.urlopen(jwks_url, timeout=10).read().decode())
    assert run_cli(capsys, "receipt", "verify", str(signed), "--jwks", str(saved))[0] == 0
    # ... and fails once altered: a step's result edited under the same signature.
    header, payload, signature = signed.read_text().strip().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["steps"][4]["buckets"][0]["versions_deleted"] = 0
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = tmp_path / "tampered.jws"
    tampered.write_text(f"{header}.{forged}.{signature}")
    rc, out, err = run_cli(capsys, "receipt", "verify", str(tampered), "--jwks", str(saved))
    assert rc == 1 and "signature does not match" in err

    # Running it again is a no-op that hands back the same receipt.
    rc, out, err = run_cli(capsys, *p.cli("leaver", "--yes", "--json"))
    assert rc == 0, err
    assert json.loads(out)["receipt"]["completed_at"] == body["completed_at"]


def test_a_step_that_fails_is_named_and_a_rerun_completes(
        offboard_platform: OffboardPlatform, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    p = offboard_platform
    # The model store is unreachable: the run stops at the artifacts step, after the tenant is gone from
    # the gateways, and says how to go on.
    from xds_server.local.processes import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    rc, out, err = run_cli(capsys, *p.cli("retry", "--yes"))
    assert rc == 1
    assert "stopped at step 'artifacts'" in err and "run the same command again" in err
    done = json.loads(state_path(p.state_dir, "retry").read_text())["steps"]
    assert list(done) == ["mark", "routes", "tokens", "models"]
    assert post(p.url("/v2/models/classifier/infer"), CLASSIFY, p.token("retry")).status in REFUSED

    monkeypatch.setenv("AWS_ENDPOINT_URL", p.aws_endpoint)
    assert len(versions(p.client("s3"), "retry")) == 6  # nothing was half-deleted
    rc, out, err = run_cli(capsys, *p.cli("retry", "--yes"))
    assert rc == 0, err
    assert "mark       done before" in out and "routes     done before" in out
    assert versions(p.client("s3"), "retry") == []
    assert p.client("secretsmanager").describe_secret(
        SecretId="fairshare/tenants/retry/pseudonymisation-key").get("DeletedDate") is not None


def test_an_unknown_tenant_is_refused_by_name(offboard_platform: OffboardPlatform,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = run_cli(capsys, *offboard_platform.cli("nobody", "--yes"))
    assert rc == 2
    assert "unknown tenant 'nobody'" in err and "nobody.yaml" in err and "stayer" in err
    assert not state_path(offboard_platform.state_dir, "nobody").exists()


def test_the_config_flow_refuses_a_tenant_file_not_marked(offboard_platform: OffboardPlatform,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    p = offboard_platform
    before = (p.config_dir / "tenants" / "stayer.yaml").read_text()
    rc, _out, err = run_cli(capsys, *p.cli("stayer", "--from-config"))
    assert rc == 2 and "stayer.yaml does not say `offboard: true`" in err
    assert (p.config_dir / "tenants" / "stayer.yaml").read_text() == before
    assert post(p.url("/v2/models/classifier/infer"), CLASSIFY, p.token("stayer")).status == 200


def test_a_tenant_whose_prefix_serves_a_catalog_model_is_refused(
        offboard_platform: OffboardPlatform, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Pinned traffic: a catalog model version whose bytes sit under the tenant's prefix would break for
    every tenant if the prefix were deleted. Checked before any step, on a copy of the config."""
    import shutil

    p = offboard_platform
    cfg = tmp_path / "config"
    shutil.copytree(p.config_dir, cfg)
    models = yaml.safe_load((cfg / "models.yaml").read_text())
    models["models"]["shared"] = {"kind": "classifier", "versions": {"v1": {
        "pool": "cpu", "loader": "onnx", "artifact": f"s3://{BUCKET}/tenants/stayer/shared/model.onnx",
        "sha256": "ab" * 32}}}
    (cfg / "models.yaml").write_text(yaml.safe_dump(models))
    rc, _out, err = main(["tenant", "offboard", "stayer", "--yes", "--config", str(cfg), "--state",
                         str(tmp_path / "state"), "--status-port", str(p.status_port)]), *capsys.readouterr()
    assert rc == 2
    assert "still has traffic pinned" in err and "catalog model shared version v1" in err
    assert "offboard" not in yaml.safe_load((cfg / "tenants" / "stayer.yaml").read_text())
