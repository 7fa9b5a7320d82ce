"""Which cell a tenant belongs in: stable when cells are added, bounded by the cell size, pins honoured,
and an impossible placement refused naming what to change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.synth import small_config
from xds_server.cells.assign import _hashes, assign_region, jump
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


def test_near_capacity_one_arrival_or_departure_moves_a_few_others_not_hundreds() -> None:
    """99.9% full: the hash over-fills about half the cells, and their overflow fills the rest. One tenant
    onboarded or offboarded may bump or let back a few others (each such move is a drain), never reshuffle
    the overflow (hundreds of tenants, when overflow went to whichever cell had the most room)."""
    region, size = _region(20), 500
    tenants = [(f"t{i:05d}", None) for i in range(9_990)]
    before, problems = assign_region(region, tenants, size)
    assert not problems
    overflowed = sum(1 for t, _ in tenants if before[t] != f"c{jump(_hashes(t)[0], 20)}")
    assert overflowed > 100  # what this is about: a region where the hash alone over-fills cells
    for k in range(10):
        arrived, _ = assign_region(region, [*tenants, (f"new{k}", None)], size)
        left, _ = assign_region(region, [t for t in tenants if t[0] != tenants[k * 977][0]], size)
        assert max(Counter(arrived.values()).values()) <= size
        assert sum(1 for t, _ in tenants if arrived[t] != before[t]) <= 10, k
        assert sum(1 for t, c in left.items() if c != before[t]) <= 10, k


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
    _edit(config / "tenants" / "acme.yaml", cell="vip")  # no region has such a cell: a typo
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert "acme.yaml: cell: cell 'vip' is no region's cell (known: c0;" in err.value.render()


def test_a_pin_to_one_regions_cell_says_it_holds_wherever_the_tenant_is_served(tmp_path: Path) -> None:
    """acme is served in us-east-1 and eu-west-1; a dedicated cell of us-east-1 alone leaves it no cell in
    the EU: the message says what to add."""
    import shutil

    from bench.synth import REPO_CONFIG

    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 1, "dedicated": ["vip"]}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    _edit(config / "tenants" / "acme.yaml", cell="vip")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    text = err.value.render()
    assert "acme.yaml: cell: cell 'vip' is not a cell of region eu-west-1" in text and "its only cell is c0" in text
    assert "a pin holds in every region the tenant is served in, so add 'vip' to" in text
    assert "cells.dedicated in regions.yaml, or drop the pin" in text


def test_a_dedicated_cell_may_not_take_a_shared_cells_name(config: Path) -> None:
    regions = yaml.safe_load((config / "regions.yaml").read_text())
    regions["regions"][0]["cells"] = {"shared": 2, "dedicated": ["c7"]}
    (config / "regions.yaml").write_text(yaml.safe_dump(regions, sort_keys=False))
    with pytest.raises(ConfigError, match="dedicated cell 'c7': c<number> names are the shared cells'"):
        load_config(config)


def test_placing_the_changed_tenants_alone_answers_as_placing_everyone() -> None:
    """Onboarding, offboarding, pins and regions changing, from roomy cells to full and overflowing ones:
    place_changed gives place's answer (the placement and what it keeps beside it), and declines exactly
    where place finds a problem (an unknown pin, no room left), which place then names."""
    import random

    from xds_server.cells.assign import place, place_changed

    rng = random.Random(11)
    split = Region(id="us-east-1", pools=[Pool(name="cpu")], cells=RegionCells(shared=4, dedicated=["d0"]))
    plain = Region(id="eu-west-1", pools=[Pool(name="cpu")])
    regions = {r.id: r for r in (split, plain)}
    size = 45
    served: dict[str, tuple[str | None, list[str]]] = {f"t{i:04d}": (None, ["us-east-1"]) for i in range(150)}
    before, problems = place(size, regions, served)
    assert not problems
    answered_overflowing = declined = 0
    for step in range(600):
        changed: dict[str, tuple[str | None, list[str]] | None] = {}
        for _ in range(rng.choice([1, 1, 2, 5, 12])):
            tid = f"t{rng.randrange(400):04d}"
            if rng.random() < (0.2 if step // 150 % 2 == 0 else 0.6):  # filling up, then emptying, in turn
                changed[tid] = None  # offboarded
            else:
                pin = rng.choice([None] * 8 + ["d0", "c1", "nowhere"])
                where = rng.choice([["us-east-1"], ["us-east-1", "eu-west-1"], ["eu-west-1"]])
                changed[tid] = (pin, where)
        after_served = {**served, **{t: i for t, i in changed.items() if i is not None}}
        for t in [t for t, i in changed.items() if i is None]:
            after_served.pop(t, None)
        whole, problems = place(size, regions, after_served)
        quick = place_changed(size, regions, before, {t: after_served.get(t) for t in changed})
        assert (quick is None) == bool(problems), step
        if quick is None:
            declined += 1
        else:
            assert quick == whole, step
            answered_overflowing += bool(whole.ledgers["us-east-1"].overflow)
        if not problems:  # a refused change is not applied: the last good placement stays
            served, before = after_served, whole
    assert answered_overflowing > 100 and declined > 50  # overflowing cells were met, and refusals


def test_a_change_that_over_fills_a_cell_is_placed_as_place_places_it() -> None:
    from xds_server.cells.assign import place, place_changed

    region = Region(id="us-east-1", pools=[Pool(name="cpu")], cells=RegionCells(shared=2, dedicated=["d0"]))
    regions = {region.id: region}
    to_c0 = [t for t in (f"t{i}" for i in range(100)) if jump(_hashes(t)[0], 2) == 0][:3]
    before, _ = place(2, regions, {to_c0[0]: (None, [region.id])})
    assert before.cells[region.id] == {to_c0[0]: "c0"}  # c0 has room for one more
    arriving = {t: (None, [region.id]) for t in to_c0[1:]}
    quick = place_changed(2, regions, before, arriving)  # c0 would hold 3 of 2: one overflows to c1
    whole, problems = place(2, regions, {to_c0[0]: (None, [region.id]), **arriving})
    assert not problems and sorted(whole.cells[region.id].values()) == ["c0", "c0", "c1"]
    assert quick == whole
    pinned = {f"p{i}": ("d0", [region.id]) for i in range(3)}  # a dedicated cell over its size: place refuses
    assert place_changed(2, regions, before, pinned) is None


def test_a_pin_typo_is_found_with_the_files_not_behind_a_policy_refusal(tmp_path: Path) -> None:
    """Over the region's GPUs (a policy refusal) and pinned to a cell no region has: the typo is what the
    engineer sees first, as every typo is, rather than after fixing the GPUs."""
    import shutil

    from bench.synth import REPO_CONFIG

    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    _edit(config / "tenants" / "acme.yaml", quotas={"gpus": 4}, cell="c99")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert [str(p) for p in err.value.problems] == [
        f"{config / 'tenants/acme.yaml'}: cell: cell 'c99' is no region's cell (known: c0; regions.yaml "
        "cells.dedicated names a region's own cells)"]
    _edit(config / "tenants" / "acme.yaml", cell=None)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert "gpu-guarantees-exceed-capacity" in err.value.render()
