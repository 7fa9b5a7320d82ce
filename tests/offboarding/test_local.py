"""`fairshare tenant offboard` as a new user runs it on a local platform without AWS: as README shows it
(without --no-aws) it is refused before anything is done, naming --no-aws and what that skips; with
--no-aws it completes, and the receipt says what the replicas held of the tenant (none remains, the
reload having unloaded it) and lists the own model files left in the config source. A config without
model buckets has nothing in S3 to delete and asks AWS nothing about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import post
from tests.offboarding.local_platform import BUCKET, local_model_files, without_aws, write_config
from tests.offboarding.platform import OffboardPlatform
from tests.offboarding.test_offboard import CLASSIFY, held, router_body, run_cli
from xds_server.local.processes import free_port
from xds_server.offboard import storage
from xds_server.offboard.run import STEPS, OffboardError, Offboarding, Options, State, _summary, state_path


def test_offboarding_without_aws_names_no_aws_and_the_receipt_says_what_remains(
        local_platform: OffboardPlatform, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = local_platform
    without_aws(monkeypatch, tmp_path)
    token = p.token("local")
    # Its own model loads from the config source and answers.
    reply = post(p.url("/v2/models/router/infer"), router_body(), token)
    assert reply.status == 200, reply.body
    assert held(p, "local") == {"local:router"}  # type: ignore[arg-type]
    tenant_file = p.config_dir / "tenants" / "local.yaml"

    # As README shows it: refused before any step (the tenant still served), saying what to pass and why.
    rc, _out, err = run_cli(capsys, *p.cli("local", "--yes"))
    assert rc == 2, err
    assert "no AWS credentials found" in err and "--no-aws" in err
    assert f"s3://{BUCKET}" in err and "Secrets Manager" in err and "receipt says they were skipped" in err
    assert "offboard" not in yaml.safe_load(tenant_file.read_text())
    assert not state_path(p.state_dir, "local").exists()
    assert post(p.url("/v2/models/classifier/infer"), CLASSIFY, token).status == 200

    rc, out, err = run_cli(capsys, *p.cli("local", "--yes", "--no-aws"))
    assert rc == 0, err
    signed = p.state_dir / "offboard" / "local.receipt.jws"
    jwks = f"http://127.0.0.1:{p.platform.opts.status_port}/.well-known/jwks.json"
    rc, verified, err = run_cli(capsys, "receipt", "verify", str(signed), "--jwks", jwks, "--json")
    assert rc == 0, err
    body = json.loads(verified)
    steps = {s["step"]: s for s in body["steps"]}

    # What the replicas held of it: asked, none remains; what unloaded it (this step, or the control
    # plane on the reload that offboarded it), never a bare "0 unloads" for a model that was loaded.
    models = steps["models"]
    assert models["own_models"] == ["local:router"]
    assert len(models["replicas"]) == 2 and all(r["holds_now"] == [] for r in models["replicas"])
    here = {m for r in models["replicas"] for m in r["unloaded"]}
    on_reload = set(models.get("unloaded_on_reload", {}).get("models", []))
    assert here | on_reload == {"local:router"} and not here & on_reload
    assert "1 own model(s) (local:router), none remains on 2 replicas (checked)" in out
    if on_reload:
        assert "unloaded on the reload that offboarded it" in out
        assert "the reload that offboarded the tenant" in models["unloaded_on_reload"]["note"]
    assert held(p, "local") == set()  # type: ignore[arg-type]

    # --no-aws: the bucket was not cleaned (not "nothing stored there"), and the model files in the config
    # source are listed among what remains, for the change that removes the tenant file.
    files = sorted(str(f.relative_to(p.config_dir)) for f in (p.config_dir / "models" / "local").rglob("*")
                   if f.is_file())
    assert files == ["models/local/router/1/model.onnx", "models/local/router/2/model.onnx",
                     "models/local/router/features.json"]
    artifacts = steps["artifacts"]
    assert "--no-aws" in artifacts["skipped"] and f"s3://{BUCKET}" in artifacts["skipped"]
    assert "nothing stored" not in json.dumps(artifacts)
    assert artifacts["local_files_not_deleted"] == files
    remains = {r["what"]: r for r in body["remains"]}
    own = remains["the tenant's own model files (3)"]
    assert own["files"] == files and "config source" in own["where"]
    assert "remove them with the tenant's file" in own["why"]
    assert all((p.config_dir / f).is_file() for f in files)
    assert "--no-aws" in remains["any secret named fairshare/tenants/local/..."]["why"]
    assert "3 own model file(s) remain in the config source" in out
    # The other tenant never noticed.
    assert post(p.url("/v2/models/classifier/infer"), CLASSIFY, p.token("stayer")).status == 200


def test_a_config_without_model_buckets_has_nothing_in_s3_to_delete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path, free_port(), bucket=None)
    files = local_model_files(cfg, "stayer")  # a folder of its own beside local's
    job = Offboarding(Options(tenant="stayer", config_dir=cfg, state_dir=tmp_path / "state"))
    state = State.load(state_path(tmp_path / "state", "stayer"), "stayer")

    # Without credentials the refusal names only what would need AWS: Secrets Manager, no bucket.
    without_aws(monkeypatch, tmp_path)
    with pytest.raises(OffboardError, match="--no-aws") as refused:
        job.preflight(state)
    assert "cleans Secrets Manager in us-east-1" in str(refused.value) and "s3://" not in str(refused.value)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    job.preflight(state)

    def no_aws_call(service: str, region: str) -> None:
        raise AssertionError(f"{service} in {region} asked with no model bucket configured")

    monkeypatch.setattr(storage, "_client", no_aws_call)
    result = job._artifacts(state)
    assert result["buckets"] == [] and result["note"] == ("no region of the config has a model bucket: nothing "
                                                          "in S3 to delete")
    assert result["local_files_not_deleted"] == files
    assert _summary("artifacts", result).startswith("no region of the config has a model bucket")


def test_missing_credentials_at_a_step_name_no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that vanish between the check and the step (an expired session): the step's error
    still says what --no-aws would skip."""
    without_aws(monkeypatch, tmp_path)
    with pytest.raises(storage.StorageError, match=r"no AWS credentials found.*--no-aws"):
        storage.delete_artifacts(BUCKET, "us-east-1", "local")
    with pytest.raises(storage.StorageError, match=r"Secrets Manager in us-east-1.*--no-aws"):
        storage.schedule_secret_deletion("us-east-1", "local", 30)


def test_steps_an_earlier_no_aws_run_skipped_are_run_once_aws_is_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offboarding run with --no-aws skips the model buckets and Secrets Manager. Were they marked done,
    a later run with AWS would clean nothing and the tenant's objects and secrets would stay for good: it
    runs them, and issues the receipt again (the first listed them as skipped)."""
    cfg = write_config(tmp_path, free_port())
    state = State.load(state_path(tmp_path / "state", "stayer"), "stayer")
    for step in STEPS:
        state.done(step, {"skipped": "--no-aws: not asked"} if step in ("artifacts", "secrets") else {})
    assert all(state.finished(step, no_aws=True) for step in STEPS)
    assert [step for step in STEPS if not state.finished(step, no_aws=False)] == ["artifacts", "secrets", "receipt"]

    with_aws = Offboarding(Options(tenant="stayer", config_dir=cfg, state_dir=tmp_path / "state"))
    without_aws(monkeypatch, tmp_path)
    with pytest.raises(OffboardError, match="no AWS credentials found") as refused:
        with_aws.preflight(state)
    assert f"s3://{BUCKET}" in str(refused.value) and "Secrets Manager" in str(refused.value)

    # Its file removed since: those steps read its regions from it, so the user is told to restore it.
    (cfg / "tenants" / "stayer.yaml").unlink()
    with pytest.raises(OffboardError, match="offboarded with --no-aws, which skipped artifacts, secrets"):
        with_aws.preflight(state)
    Offboarding(Options(tenant="stayer", config_dir=cfg, state_dir=tmp_path / "state", no_aws=True)).preflight(state)


def test_no_control_plane_at_the_status_port_is_refused_before_the_mark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every step after the mark asks the control plane: a wrong --status-port used to mark the tenant file
    (the next reload would take the tenant off every gateway) and then stop at the routes step."""
    cfg = write_config(tmp_path, free_port())
    before = (cfg / "tenants" / "stayer.yaml").read_text()
    rc, _out, err = run_cli(capsys, "tenant", "offboard", "stayer", "--yes", "--no-aws", "--config", str(cfg),
                            "--state", str(tmp_path / "state"), "--status-port", str(free_port()))
    assert rc == 2 and "no control plane answers at" in err and "--status-port" in err
    assert (cfg / "tenants" / "stayer.yaml").read_text() == before
    assert not state_path(tmp_path / "state", "stayer").exists()
