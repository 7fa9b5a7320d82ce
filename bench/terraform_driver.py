"""Drive the real `terraform` binary against a moto server: what the infra tests and `bench/region.py`
share. Every run works on a private copy of terraform/ and config/, with its own data dir and an empty
CLI config, so nothing is written into the repository and no user setting leaks in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.local.aws import MOTO_ENV, STATE_BUCKET, STATE_REGION, ensure_bucket, moto_argv
from xds_server.local.processes import Child, free_port, wait_http

REPO = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = REPO / "terraform"
MODULES = ("network", "cluster", "node_pools", "model_store", "audit_store", "tenant_secrets", "iam")
PLUGIN_DIRS = (os.environ.get("TF_PLUGIN_DIR", ""), "/opt/tf-plugins")


def terraform_bin() -> str | None:
    return shutil.which("terraform")


def plugin_dir() -> Path | None:
    """The local provider mirror, where there is one (no registry access here)."""
    return next((Path(d) for d in PLUGIN_DIRS if d and Path(d).is_dir()), None)


class TerraformError(RuntimeError):
    pass


@dataclass
class Terraform:
    """One working directory of Terraform configuration and its own data dir."""

    workdir: Path
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = terraform_bin()
        if binary is None:
            raise TerraformError("terraform is not on PATH")
        cli_config = self.data_dir.parent / "empty.tfrc"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cli_config.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
        env |= {"TF_DATA_DIR": str(self.data_dir), "TF_CLI_CONFIG_FILE": str(cli_config),
                "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **self.env}
        proc = subprocess.run([binary, *args, "-no-color"], cwd=self.workdir, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise TerraformError(f"terraform {' '.join(args)} in {self.workdir} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def init(self, backend: Mapping[str, str] | None = None, timeout: float = 300) -> None:
        """`terraform init` from the provider mirror; no backend (validate, tests) unless `backend` is given."""
        args = ["init", "-input=false"]
        mirror = plugin_dir()
        if mirror is not None:
            args.append(f"-plugin-dir={mirror}")
        if backend is None:
            args.append("-backend=false")
        else:
            args += [f"-backend-config={k}={v}" for k, v in backend.items()]
        self.run(*args, timeout=timeout)


def copy_tree(target: Path, tenants_dir: Path | None = None) -> Path:
    """terraform/ and config/ copied under `target` (optionally with another tenant dir): returns terraform/."""
    tf = target / "terraform"
    shutil.copytree(TERRAFORM_DIR, tf, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfplan"))
    shutil.copytree(REPO / "config", target / "config", ignore=shutil.ignore_patterns("tenants"))
    shutil.copytree(tenants_dir or REPO / "config" / "tenants", target / "config" / "tenants")
    return tf


@dataclass
class MotoServer:
    """A real moto server process on a free port (AWS managed IAM policies loaded, as EKS roles attach them)."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.child = Child("moto", moto_argv(self.port), self.log_dir / "moto.log", env=MOTO_ENV).start()
        wait_http(f"{self.url}/moto-api/", timeout=60, proc=self.child.proc, log_file=self.child.log_file)
        return self

    def reset(self) -> None:
        """Forget every resource (between benchmark runs)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def client(self, service: str, region: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def backend_config(self, region: str) -> dict[str, str]:
        """S3 backend settings for a region's state in this moto server (what the Makefile passes for real AWS,
        plus the endpoint and fake-credential switches)."""
        return {
            "bucket": STATE_BUCKET, "key": f"fairshare/{region}/terraform.tfstate", "region": STATE_REGION,
            "endpoints": f'{{s3="{self.url}"}}', "use_path_style": "true", "use_lockfile": "true",
            "skip_credentials_validation": "true", "skip_requesting_account_id": "true",
            "skip_metadata_api_check": "true", "access_key": "test", "secret_key": "test",
        }

    def create_state_bucket(self) -> None:
        ensure_bucket(self.url, STATE_BUCKET)


@dataclass
class Region:
    """The region root of a copied tree, planned, applied and destroyed against a moto server."""

    tf: Terraform
    region: str
    moto: MotoServer
    extra_vars: dict[str, str] = field(default_factory=dict)
    var_files: list[Path] = field(default_factory=list)  # after the region's own, so they override it
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def in_copy(cls, root: Path, region: str, moto: MotoServer, tenants_dir: Path | None = None,
                extra_vars: Mapping[str, str] | None = None) -> Region:
        tree = copy_tree(root, tenants_dir)
        return cls(Terraform(tree / "region", root / "tfdata"), region, moto, dict(extra_vars or {}))

    def var_args(self) -> list[str]:
        # Throwaway settings: a moto region must be destroyable at once, secrets and key included.
        throwaway = {"aws_endpoint": self.moto.url, "force_destroy": "true", "secret_recovery_window_days": "0",
                     "kms_deletion_window_days": "7"}
        args = [f"-var-file={self.tf.workdir.parent / 'regions' / f'{self.region}.tfvars'}"]
        args += [f"-var-file={f}" for f in self.var_files]
        return args + [f"-var={k}={v}" for k, v in {**throwaway, **self.extra_vars}.items()]

    def init(self, remote_state: bool = True) -> None:
        if remote_state:
            self.moto.create_state_bucket()
            self._timed("init", lambda: self.tf.init(self.moto.backend_config(self.region)))
        else:
            # Plans of throwaway copies keep their state on disk: an override file is how Terraform
            # replaces a backend without editing the root.
            (self.tf.workdir / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
            self._timed("init", lambda: self.tf.init({}))

    def plan(self, out: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._timed("plan", lambda: self.tf.run("plan", "-input=false", f"-out={out}", *self.var_args(),
                                                       check=check))

    def show_json(self, plan_file: Path) -> dict[str, Any]:
        return dict(json.loads(self.tf.run("show", "-json", str(plan_file)).stdout))

    def apply(self, plan_file: Path) -> None:
        self._timed("apply", lambda: self.tf.run("apply", "-input=false", "-auto-approve", str(plan_file)))

    def destroy(self) -> None:
        self._timed("destroy", lambda: self.tf.run("destroy", "-input=false", "-auto-approve", *self.var_args()))

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.tf.run("output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}

    def _timed(self, step: str, fn: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[step] = time.perf_counter() - start
