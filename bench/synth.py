"""Synthetic configs for tests and benchmarks: N tenants shaped like the example config, or the smallest
platform that still has every part (one region, one pool, the light model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
TIERS = ("enterprise", "pro", "free")


def tenant_spec(i: int, split: tuple[int, int] = (90, 10)) -> dict[str, object]:
    """Every fourth tenant may also be served in the EU (on classifier v1, the version deployed there);
    the rest are US-only with a canary split between v1 and v2."""
    eu = i % 4 == 0
    return {
        "id": tenant_id(i),
        "tier": TIERS[i % len(TIERS)],
        "regions": {"home": "us-east-1", "allowed": ["us-east-1", "eu-west-1"] if eu else ["us-east-1"]},
        "pii": {"redact": ["email", "phone"]},
        # Best-effort tenants: no guaranteed GPUs, or thousands of them would overbook the pools (policy/quota).
        "quotas": {"gpus": 0},
        "models": {"classifier": {"split": {"v1": 100} if eu else {"v1": split[0], "v2": split[1]}}},
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


def small_config(root: Path, port: int, replicas: int = 2, concurrency: int = 8) -> Path:
    """One region, one pool, the light model: the shape of the real config at the cost of a few processes.

    `concurrency` is tenant acme's quota, which sizes its Envoy circuit breakers: a load above it
    measures Envoy queueing, not routing."""
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True)
    (cfg / "tiers.yaml").write_text(
        "tiers:\n  pro:\n    weight: 2\n"
        f"    quotas: {{concurrency: {concurrency}, requests_per_second: 10, tokens_per_minute: 1000, gpus: 0}}\n")
    (cfg / "regions.yaml").write_text(
        f"regions:\n  - id: us-east-1\n    gateway_port: {port}\n    pools: [{{name: cpu, replicas: {replicas}}}]\n")
    (cfg / "models.yaml").write_text(
        "models:\n  classifier:\n    kind: classifier\n    versions:\n      v1: {pool: cpu, loader: lexicon}\n")
    (cfg / "tenants" / "acme.yaml").write_text(
        "id: acme\ntier: pro\nregions: {home: us-east-1, allowed: [us-east-1]}\n"
        "models:\n  classifier: {split: {v1: 100}}\n")
    return cfg
