"""Synthetic configs for the cells benchmarks: bench.synth's tenants (the control-plane bench's shape, plaintext
upstreams) in a region split into cells, and the endpoints file that tells the front tier where each
cell's gateway listens on this machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from bench.synth import REPO_CONFIG, tenant_id, tenant_spec, write_config
from xds_server.cells.layout import cells, local_port
from xds_server.compiler import Endpoint, EndpointDirectory
from xds_server.config.model import Region, RegionCells
from xds_server.local.processes import free_port

REGION = "us-east-1"
POOL = "cpu-general"
DEDICATED = "d0"


def write_cells_config(config_dir: Path, tenants: int, gateway_port: int, shared: int,
                       dedicated: tuple[str, ...] = (), size: int = 2500) -> None:
    """`tenants` synthetic tenants; REGION split into `shared` cells of at most `size` (shared 1 and no
    dedicated cell: today's single-Envoy layout), the front on `gateway_port`, cell k on the next ports."""
    write_config(config_dir, 0, ports=(gateway_port, free_port()))
    platform = config_dir / "platform.yaml"
    data = yaml.safe_load(platform.read_text())
    data["gateway"]["upstream_tls"]["enabled"] = False  # the bench's runtime serves plaintext
    data["cells"] = {"size": size}
    platform.write_text(yaml.safe_dump(data, sort_keys=False))
    set_cells(config_dir, shared, dedicated)
    tenants_dir = config_dir / "tenants"
    for i in range(tenants):
        write_tenant_fast(tenants_dir, i)


def example_in_cells(dest: Path, size: int, shared: int, dedicated: tuple[str, ...] = ()) -> Path:
    """The repository's example config (own models, failover, every tier) copied to `dest`, REGION split into
    `shared` cells of at most `size` tenants and the `dedicated` ones."""
    root = Path(shutil.copytree(REPO_CONFIG, dest))
    platform = yaml.safe_load((root / "platform.yaml").read_text())
    platform["cells"] = {"size": size}
    (root / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))
    set_cells(root, shared, dedicated)
    return root


def set_cells(config_dir: Path, shared: int, dedicated: tuple[str, ...] = ()) -> None:
    path = config_dir / "regions.yaml"
    data = yaml.safe_load(path.read_text())
    for region in data["regions"]:
        if region["id"] == REGION:
            region["cells"] = {"shared": shared, "dedicated": list(dedicated)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write_tenant_fast(tenants_dir: Path, i: int, split: tuple[int, int] = (90, 10), cell: str | None = None) -> None:
    """bench.synth.write_tenant through libyaml (100,000 files: 28 s instead of 62 s), optionally pinned."""
    spec = tenant_spec(i, split)
    if cell is not None:
        spec["cell"] = cell
    (tenants_dir / f"{tenant_id(i)}.yaml").write_text(yaml.dump(spec, Dumper=yaml.CSafeDumper, sort_keys=False))


def write_endpoints(path: Path, runtime_port: int, gateway_port: int, shared: int,
                    dedicated: tuple[str, ...] = ()) -> None:
    """The runtime's pool, and each cell's gateway where the local launcher puts it (layout.local_port)."""
    region = Region.model_construct(id=REGION, gateway_port=gateway_port,
                                    cells=RegionCells(shared=shared, dedicated=list(dedicated)))
    by_pool: dict[tuple[str, str], tuple[Endpoint, ...]] = {(REGION, POOL): (Endpoint("127.0.0.1", runtime_port),)}
    for k, cell in enumerate(cells(region)):
        by_pool[(REGION, f"gateway.{cell}")] = (Endpoint("127.0.0.1", local_port(region, k)),)
    EndpointDirectory(by_pool).dump(path)
