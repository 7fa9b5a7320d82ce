"""The README's local region rollout, exactly as written: `make local-aws`, export what it prints, then
`make region-plan`, `region-apply`, `region-destroy` and `local-aws-stop`, each through make in the repo,
checked from the outside with boto3. And a plain moto server (no managed policies, no state bucket) is
refused before anything is created, naming the cause and the fix."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from bench.terraform_driver import REPO, plugin_dir
from tests.infra.conftest import REGION, require_terraform
from xds_server.local import aws
from xds_server.local.processes import Child, free_port, wait_http

pytestmark = pytest.mark.timeout(600)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _make(target: str, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", target, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=540, check=False)
    out = _ANSI.sub("", proc.stdout + proc.stderr)  # Terraform colours its summaries
    assert proc.returncode == 0, f"make {target} exited {proc.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture()
def rollout_env(tmp_path: Path) -> dict[str, str]:
    require_terraform()
    if plugin_dir() is None:
        pytest.skip("no local provider mirror (/opt/tf-plugins or $TF_PLUGIN_DIR): the moto tests run offline")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    # Private work dirs and port: the same targets, without touching a user's own .fairshare/.
    return env | {"LOCAL_AWS_PORT": str(free_port()), "LOCAL_AWS_DIR": str(tmp_path / "local-aws"),
                  "TF_WORK": str(tmp_path / "terraform")}


def test_the_readme_rollout_works_as_written(rollout_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(rollout_env)
    try:
        started = _make("local-aws", env)
        assert "managed IAM policies loaded" in started and "state bucket s3://fairshare-tfstate created" in started
        # What the README says to do next: export the variables it printed (the env file holds the same).
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", (tmp_path / "local-aws" / "env").read_text(), re.M))
        assert set(exports) == {"AWS_ENDPOINT", "TF_STATE_BUCKET"}
        env |= exports

        planned = _make("region-plan", env, f"REGION={REGION}")
        assert "policy check passed" in planned and re.search(r"Plan: \d+ to add", planned), planned[-2000:]

        applied = _make("region-apply", env, f"REGION={REGION}")
        added = re.search(r"Apply complete! Resources: (\d+) added", applied)
        assert added and int(added.group(1)) > 0, applied[-2000:]
        assert '"model_bucket"' in applied  # the chart's inputs, printed for the Helm step
        eks = aws.client(exports["AWS_ENDPOINT"], "eks", REGION)
        assert eks.list_clusters()["clusters"] == [f"fairshare-{REGION}"]

        # A later plan that fails leaves nothing for region-apply to apply: not the plan before it.
        _make("region-plan", env, f"REGION={REGION}")
        assert (tmp_path / "terraform" / f"{REGION}.tfplan").exists()
        dead = env | {"AWS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
        failed = subprocess.run(["make", "--no-print-directory", "region-plan", f"REGION={REGION}"], cwd=REPO,
                                env=dead, capture_output=True, text=True, timeout=300, check=False)
        assert failed.returncode != 0
        assert not (tmp_path / "terraform" / f"{REGION}.tfplan").exists()
        refused = subprocess.run(["make", "--no-print-directory", "region-apply", f"REGION={REGION}"], cwd=REPO,
                                 env=env, capture_output=True, text=True, timeout=300, check=False)
        assert refused.returncode != 0 and "no saved plan" in refused.stdout + refused.stderr

        destroyed = _make("region-destroy", env, f"REGION={REGION}", "AUTO_APPROVE=1")
        assert f"Destroy complete! Resources: {added.group(1)} destroyed" in destroyed, destroyed[-2000:]
        assert eks.list_clusters()["clusters"] == []
    finally:
        stopped = _make("local-aws-stop", env)
    assert "stopped the local AWS endpoint" in stopped


def test_a_plain_moto_server_is_refused_with_the_cause_and_the_fix(rollout_env: dict[str, str],
                                                                    tmp_path: Path) -> None:
    port = free_port()
    # moto as a user would start it by hand: no managed IAM policies, no state bucket.
    plain = Child("moto-plain", aws.moto_argv(port), tmp_path / "moto.log", env=aws.FAKE_CREDENTIALS).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60, proc=plain.proc, log_file=plain.log_file)
        env = rollout_env | {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "TF_STATE_BUCKET": "my-state"}
        proc = subprocess.run(["make", "--no-print-directory", "region-plan", f"REGION={REGION}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    finally:
        plain.stop()
    assert proc.returncode != 0
    assert "MOTO_IAM_LOAD_MANAGED_POLICIES=true" in proc.stderr and "make local-aws" in proc.stderr
    assert "state bucket 'my-state' does not exist" in proc.stderr
    # Refused before Terraform ran: nothing was planned, so nothing can be applied.
    assert not (tmp_path / "terraform" / f"{REGION}.tfplan").exists()
    assert "terraform -chdir" not in proc.stdout


@pytest.mark.parametrize("target", ["region-plan", "region-apply", "region-destroy"])
def test_a_region_target_without_region_refuses_before_anything_runs(target: str, tmp_path: Path) -> None:
    """A forgotten REGION= must not plan, apply or destroy the region a default would name."""
    env = {k: v for k, v in os.environ.items() if k != "REGION" and not k.startswith(("AWS_", "TF_"))}
    env |= {"TF_WORK": str(tmp_path / "terraform"), "TERRAFORM": "false"}  # terraform itself must not run
    proc = subprocess.run(["make", "--no-print-directory", target, "AUTO_APPROVE=1", "TF_STATE_BUCKET=b"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: set REGION=<region> for the region-* targets (regions: eu-west-1 us-east-1)" in proc.stdout
    assert not (tmp_path / "terraform").exists()
