"""Synthetic tenant configs for benchmarks: N tenants shaped like the example config."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
TIERS = ("enterprise", "pro", "free")


def tenant_spec(i: int, split: tuple[int, int] = (90, 10)) -> dict[str, object]:
    tier = TIERS[i % len(TIERS)]
    eu = i % 4 == 0
    return {
        "id": tenant_id(i),
        "tier": tier,
        "regions": {"home": "us-east-1", "allowed": ["us-east-1", "eu-west-1"] if eu else ["us-east-1"]},
        "pii": {"redact": ["email", "phone"]},
        "models": {"embedder": {"split": {"v1": split[0], "v2": split[1]}}},
    }


def tenant_id(i: int) -> str:
    return f"t{i:05d}"


def write_config(target: Path, tenants: int, ports: tuple[int, int] | None = None) -> Path:
    """A copy of the example config with `tenants` synthetic tenants (and the example ones removed)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO_CONFIG, target, ignore=shutil.ignore_patterns("tenants"))
    (target / "tenants").mkdir()
    for i in range(tenants):
        write_tenant(target, i)
    if ports is not None:
        set_gateway_ports(target, ports)
    return target


def write_tenant(target: Path, i: int, split: tuple[int, int] = (90, 10)) -> Path:
    path = target / "tenants" / f"{tenant_id(i)}.yaml"
    path.write_text(yaml.safe_dump(tenant_spec(i, split), sort_keys=False))
    return path


def set_gateway_ports(config_dir: Path, ports: tuple[int, ...]) -> None:
    path = config_dir / "regions.yaml"
    data = yaml.safe_load(path.read_text())
    for region, port in zip(data["regions"], ports, strict=False):
        region["gateway_port"] = port
    path.write_text(yaml.safe_dump(data, sort_keys=False))
