"""The rate-limit table an edit updates for its changed tenants alone equals the table built whole."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from tests.compiler.test_compile import JWKS
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory
from xds_server.config import load_config
from xds_server.config.loader import TenantFileCache


def test_edits_update_the_limit_table_as_a_full_build_would(cfg_dir: Path) -> None:
    spec = yaml.safe_load((cfg_dir / "tenants" / "acme.yaml").read_text())
    spec.pop("own_models", None)
    spec["quotas"] = {"concurrency": 32, "gpus": 0}  # thirty copies must not overbook the GPU pools
    for i in range(30):
        (cfg_dir / "tenants" / f"t{i:02d}.yaml").write_text(yaml.safe_dump({**spec, "id": f"t{i:02d}"}))
    rng = random.Random(7)
    cache, compiler = TenantFileCache(), Compiler()
    versions = set()
    # Each kind of change, then a random mix.
    edits = [("t03", "rps"), ("t05", "remove"), ("t07", "exempt"), ("t05", "add"), ("t09", "remove"),
             *((f"t{rng.randrange(30):02d}", rng.choice(("rps", "exempt", "remove", "add"))) for _ in range(10))]
    for step, (tid, change) in enumerate([*edits, ("t00", "rps")]):
        cfg = load_config(cfg_dir, cache)
        incremental = compiler.compile(CompileInputs(cfg, EndpointDirectory(), JWKS)).ratelimits
        whole = Compiler().compile(CompileInputs(cfg, EndpointDirectory(), JWKS)).ratelimits
        assert dict(incremental.tenants) == dict(whole.tenants), step
        assert incremental.version == whole.version, step
        versions.add(whole.version)
        path = cfg_dir / "tenants" / f"{tid}.yaml"
        if change == "remove" and path.exists():
            path.unlink()
        elif change == "add" or not path.exists():
            path.write_text(yaml.safe_dump({**spec, "id": tid}))
        elif change == "exempt":
            path.write_text(yaml.safe_dump({**spec, "id": tid, "rate_limit": {"exempt": rng.random() < 0.5}}))
        else:
            quotas = {**spec["quotas"], "requests_per_second": rng.randrange(1, 9)}
            path.write_text(yaml.safe_dump({**spec, "id": tid, "quotas": quotas}))
    assert len(versions) > 3  # the edits did change the table
