"""`fairshare policy check`, what a pull request runs: every broken rule in plain words, non-zero exit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from bench.synth import REPO_CONFIG
from xds_server.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))


def test_a_clean_config_passes(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "--config", str(config)]) == 0
    assert "policy check passed" in capsys.readouterr().out


def test_every_violation_is_named_with_tenant_field_rule_and_reason(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    initech = config / "tenants" / "initech.yaml"
    initech.write_text(initech.read_text().replace("classifier: {split: {v1: 100}}",
                                                   "classifier: {split: {v1: 50, v2: 50}}"))
    hooli = config / "tenants" / "hooli.yaml"
    hooli.write_text(hooli.read_text() + "weight: 3\n")
    report_file = tmp_path / "report.json"
    assert main(["policy", "check", "--config", str(config), "--json", str(report_file)]) == 1
    out = capsys.readouterr().out
    assert f"- initech [{initech}]" in out
    assert "field: models.classifier.split.v2" in out
    assert "rule:  residency/split-outside-allowed-regions" in out
    assert "why:   classifier:v2 takes 50% of the tenant's traffic but is not deployed in eu-west-1" in out
    assert "rule:  quota/weight-above-tier" in out
    assert "policy check FAILED: 2 violation(s)" in out
    assert "note:" not in out  # hooli's weight is a violation, not a clamp: no quota was cut down
    report = json.loads(report_file.read_text())
    assert report["ok"] is False
    assert {(v["subject"], v["rule"]) for v in report["sections"][0]["violations"]} == {
        ("initech", "split-outside-allowed-regions"), ("hooli", "weight-above-tier")}


def test_manifests_are_checked_by_the_admission_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evil", "namespace": "fairshare"},
           "spec": {"containers": [{"name": "c", "image": "docker.io/evil/miner:1",
                                    "securityContext": {"privileged": True}}]}}
    manifests = tmp_path / "m.yaml"
    manifests.write_text(yaml.safe_dump(pod))
    assert main(["policy", "check", "--no-config", "--manifests", str(manifests)]) == 1
    out = capsys.readouterr().out
    assert "Pod/fairshare/evil" in out and "privileged" in out


def test_each_manifest_violation_names_its_file_and_is_reported_for_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Two regions' renders hold the same objects: the same defect in both is two violations, each naming its
    file (text and JSON), not one merged violation naming neither."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evil", "namespace": "fairshare"},
           "spec": {"containers": [{"name": "c", "image": "ghcr.io/fairshare/x:1",
                                    "securityContext": {"privileged": True}}]}}
    fine = {**pod, "metadata": {"name": "fine", "namespace": "fairshare"},
            "spec": {"containers": [{"name": "c", "image": "ghcr.io/fairshare/x:1"}]}}
    eu, us, clean = tmp_path / "eu-west-1" / "manifests.yaml", tmp_path / "us-east-1" / "manifests.yaml", \
        tmp_path / "clean.yaml"
    for path, docs in ((eu, [fine, pod]), (us, [pod]), (clean, [fine])):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs))
    report_file = tmp_path / "report.json"
    assert main(["policy", "check", "--no-config", "--manifests", str(eu), str(us), str(clean),
                 "--json", str(report_file)]) == 1
    out = capsys.readouterr().out
    assert f"- Pod/fairshare/evil [{eu}]" in out and f"- Pod/fairshare/evil [{us}]" in out
    assert "4 checked, 2 violation(s)" in out and "policy check FAILED: 2 violation(s)" in out
    [section] = json.loads(report_file.read_text())["sections"]
    assert [(v["subject"], v["rule"], v["file"]) for v in section["violations"]] == [
        ("Pod/fairshare/evil", "no-privileged-containers", str(eu)),
        ("Pod/fairshare/evil", "no-privileged-containers", str(us))]
    assert section["locations"] == {"Pod/fairshare/evil": f"{eu}, {us}"}


def test_manifests_that_are_not_yaml_are_one_line_naming_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: [Pod\nmetadata: {name: x}\n")
    report_file = tmp_path / "report.json"
    assert main(["policy", "check", "--no-config", "--manifests", str(bad), "--json", str(report_file)]) == 2
    out = capsys.readouterr().out
    assert f"  error: {bad}: line 3, column 9: not valid YAML: did not find expected ',' or ']'\n" in out
    assert "<unicode string>" not in out and "while parsing" not in out
    assert json.loads(report_file.read_text())["sections"][0]["errors"] == [
        {"file": str(bad), "field": "line 3, column 9", "message": "not valid YAML: did not find expected ',' or ']'"}]


def test_an_unreadable_plan_is_an_error_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{not json")
    assert main(["policy", "check", "--no-config", "--plan", str(plan)]) == 2
    assert f"{plan}: not JSON" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "why"), [
    (b"{}", "not `terraform show -json` output"),
    (b'{"format_version": "1.0", "values": {"root_module": {}}}', "a state, not a plan"),
    (b"PK\x03\x04binary", "a binary plan file"),
])
def test_what_is_not_a_plan_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, why: str,
) -> None:
    """Each holds no planned resource: evaluated, the policies would find nothing wrong with it."""
    plan = tmp_path / "plan.json"
    plan.write_bytes(content)
    assert main(["policy", "check", "--no-config", "--plan", str(plan)]) == 2
    out = capsys.readouterr().out
    assert f"{plan}: {why}" in out and "terraform show -json <planfile>" in out
    assert out.rstrip().endswith("policy check FAILED: 1 error(s), 0 violation(s)")


@pytest.mark.parametrize(("content", "why"), [
    ("", "no Kubernetes objects in it"),
    ("gateway:\n  replicas: 3\n", "document 1 is not a Kubernetes object"),
])
def test_what_is_not_a_manifest_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, why: str,
) -> None:
    manifests = tmp_path / "values.yaml"
    manifests.write_text(content)
    assert main(["policy", "check", "--no-config", "--manifests", str(manifests)]) == 2
    assert f"{manifests}: {why}" in capsys.readouterr().out


def test_a_directory_without_manifests_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "render"
    empty.mkdir()
    assert main(["policy", "check", "--no-config", "--manifests", str(empty)]) == 2
    assert f"{empty}: no manifests in it (no *.yaml or *.yml file)" in capsys.readouterr().out


def test_a_config_that_does_not_load_fails_on_its_errors_not_as_zero_violations(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    acme = config / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text() + "colour: red\n")
    assert main(["policy", "check", "--config", str(config)]) == 2  # nothing could be checked
    out = capsys.readouterr().out
    assert f"config ({config}): could not be checked, 1 error(s)" in out
    assert f"  error: {acme}: colour: unknown field" in out
    assert out.rstrip().endswith("policy check FAILED: 1 error(s), 0 violation(s)")


def test_a_quota_clamped_to_its_tiers_limit_is_a_note_not_a_failure(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    globex = config / "tenants" / "globex.yaml"
    globex.write_text(globex.read_text() + "quotas: {concurrency: 100000}\n")
    report_file = tmp_path / "report.json"
    assert main(["policy", "check", "--config", str(config), "--json", str(report_file)]) == 0
    out = capsys.readouterr().out
    assert "  note: globex: quotas.concurrency: asked 100000, clamped to tier pro's limit 64" in out
    assert "policy check passed" in out
    assert json.loads(report_file.read_text())["sections"][0]["notes"] == [
        "globex: quotas.concurrency: asked 100000, clamped to tier pro's limit 64"]


def test_many_violations_are_shown_as_the_first_few_and_counts_by_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.synth import write_config

    config = write_config(tmp_path / "config", 45)
    for path in sorted((config / "tenants").glob("*.yaml"))[:30]:
        path.write_text(path.read_text() + "weight: 9\n")  # above every tier's weight
    report_file = tmp_path / "report.json"
    assert main(["policy", "check", "--config", str(config), "--json", str(report_file)]) == 1
    out = capsys.readouterr().out
    assert out.count("rule:  quota/weight-above-tier") == 20
    assert "  ... and 10 more violations: quota/weight-above-tier (10) (the --json report lists every one)" in out
    assert "policy check FAILED: 30 violation(s)" in out
    listed = json.loads(report_file.read_text())["sections"][0]["violations"]
    assert len(listed) == 30 and {v["rule"] for v in listed} == {"weight-above-tier"}
