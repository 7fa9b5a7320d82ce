"""Policy decisions through the running platform: what policy denies never reaches Envoy, what it
allows goes live, and a policy edit is served without a restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench.loadgen import infer_body
from inference_images.runtime import gateway as contract
from tests.e2e.conftest import RunningPlatform, eventually, post

pytestmark = pytest.mark.e2e
US, EU = "us-east-1", "eu-west-1"


def last_reload(running: RunningPlatform) -> dict[str, Any]:
    return dict(running.platform.status()["last_reload"])


def clusters(running: RunningPlatform, region: str) -> dict[str, dict[str, Any]]:
    dump = running.platform.envoys[region].config_dump("dynamic_active_clusters")
    out = {}
    for entry in dump.get("configs", []):
        cluster = entry["cluster"]
        out[cluster["name"]] = cluster
    return out


def routed_versions(running: RunningPlatform, region: str, tenant: str, model: str) -> set[str]:
    """The versions Envoy's routes for `tenant` send `model`'s requests to: the model-version header of
    each pinned route and of each entry of the split (the runtime runs the version it names)."""
    dump = running.platform.envoys[region].config_dump("dynamic_route_configs")
    out: set[str] = set()
    for entry in dump.get("configs", []):
        if entry["route_config"]["name"] != f"tenant/{tenant}":
            continue
        for route in entry["route_config"]["virtual_hosts"][0]["routes"]:
            if route["name"].split("/")[0] != model or "route" not in route:
                continue
            entries = [route, *route["route"].get("weighted_clusters", {}).get("clusters", [])]
            out |= {h["header"]["value"] for e in entries for h in e.get("request_headers_to_add", [])
                    if h["header"]["key"] == contract.MODEL_VERSION_HEADER}
    return out


def max_requests(cluster: dict[str, Any]) -> int:
    return int(cluster["circuit_breakers"]["thresholds"][0]["max_requests"])


def edit(path, old: str, new: str) -> None:  # type: ignore[no-untyped-def]
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}"
    path.write_text(text.replace(old, new))


def test_split_onto_a_version_missing_from_an_allowed_region_is_refused_where_it_would_compile(
    running: RunningPlatform, restore_config,  # type: ignore[no-untyped-def]
) -> None:
    # acme is served in us-east-1 and eu-west-1; classifier v2 runs only in us-east-1. In us-east-1 the
    # compiler alone would give acme's classifier route a v2 entry (deployed there, acme allowed there):
    # only the residency policy refuses the split, since half of acme's EU traffic would have to leave the EU.
    assert routed_versions(running, US, "acme", "classifier") == {"v1"}
    before = last_reload(running)["version"]
    at = time.time()
    edit(running.tenant_file("acme"), "classifier: {split: {v1: 100}}", "classifier: {split: {v1: 50, v2: 50}}")
    assert eventually(lambda: last_reload(running)["at"] >= at, timeout=30)
    report = last_reload(running)
    assert report["ok"] is False, f"the split was accepted: {US} routes acme to classifier v2 (only policy refuses it)"
    assert "split-outside-allowed-regions" in report["error"]
    assert "acme.yaml: models.classifier.split.v2" in report["error"]
    assert "not deployed in eu-west-1" in report["error"]
    assert report["version"] == before  # the last good config keeps serving
    assert routed_versions(running, US, "acme", "classifier") == {"v1"}
    versions = {post(running.url(US, "/v2/models/classifier/infer"), infer_body(["fine"]),
                     running.token("acme")).body.get("model_version") for _ in range(5)}
    assert versions == {"v1"}


def test_gpu_guarantees_over_capacity_are_refused(running: RunningPlatform, restore_config) -> None:  # type: ignore[no-untyped-def]
    tiers = running.config_dir / "tiers.yaml"
    edit(tiers, "tokens_per_minute: 300000, gpus: 1}", "tokens_per_minute: 300000, gpus: 3}")
    edit(tiers, "limits: {concurrency: 64, requests_per_second: 200, tokens_per_minute: 3000000, gpus: 1}",
         "limits: {concurrency: 64, requests_per_second: 200, tokens_per_minute: 3000000, gpus: 3}")
    assert eventually(lambda: last_reload(running)["ok"] is False, timeout=30)
    error = last_reload(running)["error"]
    assert "gpu-guarantees-exceed-capacity" in error and "us-east-1 guarantees 5 GPUs" in error


def test_quota_edit_within_bounds_changes_envoys_circuit_breakers_live(
    running: RunningPlatform, restore_config,  # type: ignore[no-untyped-def]
) -> None:
    name = "tenant/globex/classifier/us-east-1"  # both versions of its 80/20 split: one cap
    assert max_requests(clusters(running, US)[name]) == 16  # pro tier's default concurrency
    path = running.tenant_file("globex")
    path.write_text(path.read_text() + "quotas: {concurrency: 48}\n")
    assert eventually(lambda: max_requests(clusters(running, US)[name]) == 48, timeout=30)
    # Past the tier's limit the quota policy clamps rather than refuses: the tier caps what it sells.
    path.write_text(path.read_text().replace("concurrency: 48", "concurrency: 500"))
    assert eventually(lambda: max_requests(clusters(running, US)[name]) == 64, timeout=30)
    assert last_reload(running)["ok"] is True


def redact_header(running: RunningPlatform, tenant: str) -> str | None:
    """The PII rule Envoy's route for `tenant` hands the runtime."""
    dump = running.platform.envoys[US].config_dump("dynamic_route_configs")
    for entry in dump.get("configs", []):
        config = entry["route_config"]
        if config["name"] == f"tenant/{tenant}":
            for h in config["virtual_hosts"][0].get("request_headers_to_add", []):
                if h["header"]["key"] == "x-fairshare-pii-redact":
                    return str(h["header"].get("value", ""))
    return None


def test_policy_edit_is_picked_up_live(running: RunningPlatform, restore_config) -> None:  # type: ignore[no-untyped-def]
    # hooli's data class is "public" and its file asks for nothing: no redaction.
    assert redact_header(running, "hooli") == ""
    # The platform's stance changes: "public" data now needs IP addresses redacted too.
    edit(running.policy_dir / "pii" / "pii.rego", '"public": {"redact": set(), "block": set()}',
         '"public": {"redact": {"ip_address"}, "block": set()}')
    assert eventually(lambda: redact_header(running, "hooli") == "ip_address", timeout=30)
    assert last_reload(running)["ok"] is True
    # A broken policy is refused with the file at fault, and the last good config keeps serving.
    served = running.platform.status()["config_version"]
    (running.policy_dir / "pii" / "pii.rego").write_text("package fairshare.pii\n\nrules[id] := {\n")
    assert eventually(lambda: last_reload(running)["ok"] is False, timeout=30)
    assert "pii/pii.rego" in last_reload(running)["error"]
    assert running.platform.status()["config_version"] == served
    assert redact_header(running, "hooli") == "ip_address"
