"""The policy engines behind one interface: the OPA-server backend (against OPA's REST API served by
the real OPA Go engine) decides exactly what the embedded engine decides; bad policies and dead
backends get errors that name the file or the backend, promptly."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bench.synth import REPO_CONFIG
from xds_server.config import ConfigError, load_config
from xds_server.config.model import PolicyBackend, PolicySettings
from xds_server.local.processes import free_port
from xds_server.policy.backends import DEFAULT_POLICY_DIR, make_engine
from xds_server.policy.decide import PolicyDecider
from xds_server.policy.embedded import EmbeddedEngine
from xds_server.policy.engine import PolicyError
from xds_server.policy.resolve import platform_document, tenant_document
from xds_server.policy.sources import PolicySources


def inputs(config_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    cfg = load_config(config_dir)
    return (platform_document(cfg.tiers, cfg.regions, cfg.models),
            {t.id: tenant_document(t.spec) for t in cfg.tenants.values()})


def decide(settings: PolicySettings, platform: dict[str, Any], tenants: dict[str, dict[str, Any]],
           policy_dir: Path = DEFAULT_POLICY_DIR):  # type: ignore[no-untyped-def]
    engine = make_engine(settings)
    try:
        return PolicyDecider(engine, policy_dir).decide(platform, tenants)
    finally:
        engine.close()


def test_opa_server_backend_decides_as_the_embedded_engine(opa_url: str) -> None:
    platform, tenants = inputs(REPO_CONFIG)
    # Add the denied cases too: a split leaving the EU, a raised weight, an untrusted unredacted model,
    # an override clamped to the tier's limit, GPU guarantees over capacity.
    tenants["leaky"] = {**tenants["initech"], "models": {"classifier": {"split": {"v1": 50, "v2": 50}}}}
    tenants["greedy"] = {**tenants["globex"], "weight": 9, "quotas": {"concurrency": 999, "gpus": 1}}
    tenants["raw"] = {**tenants["hooli"], "pii": {"unredacted_models": ["classifier"]}}
    tenants["hungry"] = {**tenants["acme"], "quotas": {"gpus": 4}}
    embedded = decide(PolicySettings(), platform, tenants)
    opa = decide(PolicySettings(backend=PolicyBackend.OPA, opa_url=opa_url), platform, tenants)
    assert opa.tenants == embedded.tenants
    assert opa.violations == embedded.violations
    assert opa.adjustments == embedded.adjustments
    rules = {(v.subject, v.rule) for v in embedded.violations}
    assert {("leaky", "split-outside-allowed-regions"), ("greedy", "weight-above-tier"),
            ("raw", "unredacted-input-to-untrusted-model"), ("us-east-1", "gpu-guarantees-exceed-capacity")} <= rules
    assert embedded.tenants["greedy"]["quotas"]["concurrency"] == 64  # the pro tier's limit


def test_tenants_sharing_a_spec_get_one_evaluation_and_the_same_answers() -> None:
    platform, tenants = inputs(REPO_CONFIG)
    clones = {f"clone{i}": tenants["initech"] for i in range(5)}
    clones["leaky"] = {**tenants["initech"], "models": {"classifier": {"split": {"v1": 50, "v2": 50}}}}
    clones["leaky2"] = clones["leaky"]
    shared = decide(PolicySettings(), platform, clones)
    alone = decide(PolicySettings(), platform, {"clone0": tenants["initech"]})
    assert all(shared.tenants[f"clone{i}"] == alone.tenants["clone0"] for i in range(5))
    # A violation of a shared spec is reported for every tenant that has it...
    assert {v.subject for v in shared.violations if v.rule == "split-outside-allowed-regions"} == {"leaky", "leaky2"}
    # ...and a shared spec's guarantee counts once per tenant: 7 pro tenants x 1 GPU in the EU.
    [capacity] = [v for v in shared.violations if v.rule == "gpu-guarantees-exceed-capacity"]
    assert capacity.message == ("region eu-west-1 guarantees 7 GPUs (clone0=1, clone1=1, clone2=1, clone3=1, "
                                "clone4=1 and 2 more) but its pools have 4: add GPU pool replicas in regions.yaml or "
                                "lower tenants' quotas.gpus")
    assert capacity.subjects == ("clone0=1", "clone1=1", "clone2=1", "clone3=1", "clone4=1", "leaky=1", "leaky2=1")


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policy", ignore=shutil.ignore_patterns("*_test.rego")))


def test_a_rego_syntax_error_names_the_file_and_line(policy_copy: Path) -> None:
    target = policy_copy / "quota" / "quota.rego"
    target.write_text(target.read_text() + "\nbroken contains x if {\n")
    with pytest.raises(ConfigError) as err:
        load_config(REPO_CONFIG, policy_dir=policy_copy)
    # The file under the policy directory, its line and column, the reason (tests/policy/test_errors.py: every form).
    assert f"{target}: line " in err.value.render()


def test_policies_without_the_decisions_rule_are_refused(policy_copy: Path) -> None:
    (policy_copy / "tenant" / "tenant.rego").unlink()
    with pytest.raises(ConfigError, match="the policies gave no decisions"):
        load_config(REPO_CONFIG, policy_dir=policy_copy)


def test_a_policy_that_runs_too_long_is_stopped_and_the_engine_recovers(tmp_path: Path) -> None:
    slow = tmp_path / "slow"
    (slow / "tenant").mkdir(parents=True)
    (slow / "tenant" / "tenant.rego").write_text(
        "package fairshare.tenant\n\nresult := count([i | some i in numbers.range(1, 100000000)])\n")
    fast = tmp_path / "fast"
    (fast / "tenant").mkdir(parents=True)
    (fast / "tenant" / "tenant.rego").write_text("package fairshare.tenant\n\nresult := 42\n")
    engine = EmbeddedEngine(timeout_seconds=1.0)
    try:
        engine.load(PolicySources.load(slow), {})
        started = time.monotonic()
        with pytest.raises(PolicyError, match=r"longer than 1s and was stopped"):
            engine.query("fairshare/tenant/result", {})
        assert time.monotonic() - started < 30  # a hang guard: the worker was ended, not waited for
        engine.load(PolicySources.load(fast), {})
        assert engine.query("fairshare/tenant/result", {}) == 42
    finally:
        engine.close()


def test_a_ctrl_c_at_the_terminal_leaves_the_policy_worker_to_its_parent(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group: the worker must go on answering and end quietly
    when its parent closes it, not print a KeyboardInterrupt traceback into `make run`'s output."""
    policy = tmp_path / "p"
    (policy / "tenant").mkdir(parents=True)
    (policy / "tenant" / "tenant.rego").write_text("package fairshare.tenant\n\nresult := 42\n")
    engine = EmbeddedEngine()
    try:
        engine.load(PolicySources.load(policy), {})
        proc = engine._proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert engine.query("fairshare/tenant/result", {}) == 42
        assert engine._proc is proc  # the same worker answered: it was not stopped by the signal
    finally:
        engine.close()
    assert proc.returncode == 0


def test_an_opa_server_that_is_down_is_named(policy_copy: Path, tmp_path: Path) -> None:
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    url = f"http://127.0.0.1:{free_port()}"
    (config / "platform.yaml").write_text(
        (config / "platform.yaml").read_text() + f"policy: {{backend: opa, opa_url: '{url}', timeout_seconds: 2}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config, policy_dir=policy_copy)
    assert "policy (opa)" in err.value.render() and f"OPA at {url} is unreachable" in err.value.render()


def test_a_syntax_error_on_the_opa_backend_names_the_file_and_line(
    policy_copy: Path, tmp_path: Path, opa_url: str,
) -> None:
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    (config / "platform.yaml").write_text(
        (config / "platform.yaml").read_text() + f"policy: {{backend: opa, opa_url: '{opa_url}'}}\n")
    target = policy_copy / "quota" / "quota.rego"
    before = target.read_text()
    target.write_text(before + "\nbroken := count(1\n}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config, policy_dir=policy_copy)
    [problem] = err.value.problems
    # OPA gives the line, not the column.
    assert (problem.file, problem.field) == (str(target), f"line {before.count(chr(10)) + 3}")
    assert problem.message.startswith("unexpected } token") and "\n" not in problem.message


def test_the_pii_policy_knows_exactly_the_entities_the_runtime_finds() -> None:
    from inference_images.runtime.pii.entities import Entity

    engine = EmbeddedEngine()
    try:
        engine.load(PolicySources.load(DEFAULT_POLICY_DIR), {})
        assert sorted(engine.query("fairshare/pii/entities", {})) == sorted(e.value for e in Entity)
    finally:
        engine.close()
