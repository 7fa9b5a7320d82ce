"""Helpers for the chart tests: find helm, render the chart, evaluate the admission policy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from xds_server.policy.check import ADMISSION as ADMISSION_QUERY
from xds_server.policy.check import violations

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
CHART = REPO / "helm" / "fairshare"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
ADMISSION = REPO / "policy" / "admission" / "admission.rego"

# The Kubernetes version(s) the manifests must be valid for: whatever the Terraform cluster module pins for
# each region (terraform/regions/*.tfvars), so the chart is checked against the clusters it will meet.
# Without Terraform files, 1.33 (what EKS serves with standard support).
DEFAULT_KUBERNETES_VERSION = "1.33"


def _pinned_versions() -> tuple[str, ...]:
    found = {
        m.group(1)
        for tfvars in (REPO / "terraform" / "regions").glob("*.tfvars")
        for m in re.finditer(r'^\s*kubernetes_version\s*=\s*"([0-9.]+)"', tfvars.read_text(), re.M)
    }
    return tuple(sorted(found)) or (DEFAULT_KUBERNETES_VERSION,)


KUBERNETES_VERSIONS = _pinned_versions()


def find_helm() -> str | None:
    """helm on PATH, else the one `make tools` fetched into .tools/bin."""
    local = REPO / ".tools" / "bin" / "helm"
    return shutil.which("helm") or (str(local) if local.is_file() else None)


class HelmError(Exception):
    pass


def helm(*args: str, helm_bin: str) -> str:
    proc = subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    if proc.returncode != 0:
        raise HelmError(proc.stderr + proc.stdout)
    return proc.stdout


def template(helm_bin: str, *values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every object the chart renders, as the cluster would receive it."""
    args = ["template", "fairshare", str(CHART), "--namespace", "fairshare",
            "--kube-version", KUBERNETES_VERSIONS[-1]]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args, helm_bin=helm_bin)) if d]


def admission_violations(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The admission policy's answer, as `fairshare policy check --manifests` finds it."""
    found = violations(ADMISSION_QUERY, {"manifests": manifests})
    return sorted(({"rule": v.rule, "subject": v.subject, "field": v.field, "message": v.message} for v in found),
                  key=lambda v: (v["rule"], v["subject"]))


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def find(manifests: list[dict[str, Any]], kind: str, name: str, namespace: str = "fairshare") -> dict[str, Any]:
    for m in manifests:
        meta = m["metadata"]
        if m["kind"] == kind and meta["name"] == name and meta.get("namespace", namespace) == namespace:
            return m
    raise AssertionError(f"no {kind} {namespace}/{name} rendered")
