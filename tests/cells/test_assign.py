"""Which cell a tenant belongs in: stable when cells are added, bounded by the cell size, pins honoured,
and an impossible placement refused naming what to change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.synth import small_config
from xds_server.cells.assign import assign_region, jump
from xds_server.config import ConfigError, load_config
from xds_server.config.model import Pool, Region, RegionCells
from xds_server.local.processes import free_ports_in_a_row


def _region(shared: int, dedicated: tuple[str, ...] = ()) -> Region:
    return Region(id="us-east-1", pools=[Pool(name="cpu")],
                  cells=RegionCells(shared=shared, dedicated=list(dedicated)))


TENANTS = [(f"t{i:05d}", None) for i in range(10_000)]


def test_jump_hash_moves_keys_only_into_a_new_bucket() -> None:
    keys = range(1, 200_000, 7)
    for n in (1, 3, 39):
        before, after = [jump(k * 2654435761, n) for k in keys], [jump(k * 2654435761, n + 1) for k in keys]
        assert all(a in (b, n) for b, a in zip(before, after, strict=True))
        moved = sum(a != b for b, a in zip(before, after, strict=True))
        assert abs(moved / len(before) - 1 / (n + 1)) < 0.02


def test_adding_a_cell_moves_only_the_tenants_the_new_cell_takes() -> None:
    before, problems = assign_region(_region(4), TENANTS, size=3_000)
    after, _ = assign_region(_region(5), TENANTS, size=3_000)
    assert not problems
    moved = [t for t in before if before[t] != after[t]]
    # Only into the new cell, and about a fifth: what a fifth cell must take to be balanced.
    assert {after[t] for t in moved} == {"c4"}
    assert 0.17 < len(moved) / len(TENANTS) < 0.23


def test_no_cell_exceeds_its_size_and_overflow_is_stable() -> None:
    placed, problems = assign_region(_region(4), TENANTS, size=2_500)  # exactly full
    assert not problems
    assert Counter(placed.values()) == {"c0": 2_500, "c1": 2_500, "c2": 2_500, "c3": 2_500}
    # The same inputs give the same placement (every control-plane replica agrees), in any order.
    again, _ = assign_region(_region(4), list(reversed(TENANTS)), size=2_500)
    assert again == placed
    # One tenant more in a roomy layout moves nobody else.
    roomy, _ = assign_region(_region(4), TENANTS, size=3_000)
    plus_one, _ = assign_region(_region(4), [*TENANTS, ("newcomer", None)], size=3_000)
    assert {t: c for t, c in plus_one.items() if t != "newcomer"} == roomy


def test_pins_go_to_their_cell_and_count_against_its_size() -> None:
    tenants = [*TENANTS[:100], ("acme", "big"), ("globex", "c1")]
    placed, problems = assign_region(_region(2, ("big",)), tenants, size=60)
    assert not problems
    assert placed["acme"] == "big" and placed["globex"] == "c1"
    assert [t for t, c in placed.items() if c == "big"] == ["acme"]  # a dedicated cell takes pinned tenants only
    assert max(Counter(placed.values()).values()) <= 60


def test_an_impossible_placement_names_what_to_change() -> None:
    _placed, problems = assign_region(_region(4), [*TENANTS, ("x", "nowhere")], size=2_000)
    messages = [p.message for p in problems]
    assert any(p.tenant == "x" and "cell 'nowhere' is not a cell of region us-east-1" in p.message for p in problems)
    assert any("10,000 tenants for 4 shared cells of at most 2,000" in m and "set cells.shared to 5 or more" in m
               for m in messages), messages


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return small_config(tmp_path, free_ports_in_a_row(3), replicas=1)


def _edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_config_places_every_tenant_served_in_a_split_region(config: Path) -> None:
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2, "dedicated": ["vip"]}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    _edit(config / "tenants" / "acme.yaml", cell="vip")
    cfg = load_config(config)
    region = regions["regions"][0]["id"]
    assert set(cfg.cells) == {region}
    assert set(cfg.cells[region]) == {t for t, r in cfg.tenants.items() if region in r.routes}
    assert cfg.cells[region]["acme"] == "vip"


def test_a_bad_pin_is_a_config_error_naming_the_tenant_file(config: Path) -> None:
    _edit(config / "tenants" / "acme.yaml", cell="vip")  # the region has no cells at all
    with pytest.raises(ConfigError) as err:
        load_config(config)
    text = err.value.render()
    assert "acme.yaml: cell: cell 'vip' is not a cell of region" in text and "its only cell is c0" in text


def test_a_dedicated_cell_may_not_take_a_shared_cells_name(config: Path) -> None:
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2, "dedicated": ["c7"]}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    with pytest.raises(ConfigError, match="dedicated cell 'c7': c<number> names are the shared cells'"):
        load_config(config)
