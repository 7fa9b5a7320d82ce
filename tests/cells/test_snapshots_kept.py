"""One tenant's edit in a region split into cells changes its own cell's snapshot alone: the other cells' and
the front's snapshots are the same objects, and the store does not publish them again, so their Envoys get
nothing (bench/cells_scale: 40 cells rebuilt and diffed on every edit before)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cells.test_compile_cells import REGION, _split
from tests.compiler.test_compile import JWKS
from xds_server.cells.keys import snapshot_key
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory
from xds_server.config import load_config
from xds_server.xds.store import SnapshotStore


def test_an_edit_rebuilds_and_publishes_only_its_tenants_cell(tmp_path: Path) -> None:
    config = _split(tmp_path)
    compiler, store = Compiler(), SnapshotStore()
    cfg = load_config(config)
    first = compiler.compile(CompileInputs(cfg, EndpointDirectory(), JWKS))
    for key, snapshot in first.snapshots.items():
        store.set_snapshot(key, snapshot)
    seqs = {key: store.published(key).seq for key in first.snapshots}  # type: ignore[union-attr]

    path = config / "tenants" / "t007.yaml"
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "quotas": {"concurrency": 3}}))
    cfg = load_config(config)
    edited = snapshot_key(REGION, cfg.cells[REGION]["t007"])
    second = compiler.compile(CompileInputs(cfg, EndpointDirectory(), JWKS))
    for key, snapshot in second.snapshots.items():
        store.set_snapshot(key, snapshot)

    assert second.snapshots[edited].version != first.snapshots[edited].version
    republished = {key for key in second.snapshots if store.published(key).seq != seqs[key]}  # type: ignore[union-attr]
    assert republished == {edited}
    for key in set(second.snapshots) - {edited}:
        assert second.snapshots[key] is first.snapshots[key]
    # Kept, the other cells still hold exactly what a fresh compile builds.
    fresh = Compiler().compile(CompileInputs(cfg, EndpointDirectory(), JWKS))
    assert {k: s.version for k, s in fresh.snapshots.items()} == {k: s.version for k, s in second.snapshots.items()}
