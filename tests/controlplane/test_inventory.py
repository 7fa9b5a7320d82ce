"""`fairshare models`' inventory (xds_server/controlplane/inventory.py) from constructed replicas: which
replicas are asked, what a tenant is shown, and a table a terminal can hold however many replicas answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config import load_config
from xds_server.config.model import PlatformConfig
from xds_server.controlplane import inventory
from xds_server.controlplane.admin_client import AdminClient
from xds_server.controlplane.inventory import Inventory, ModelRow, Residency

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def cfg() -> PlatformConfig:
    return load_config(REPO_CONFIG)


@dataclass(frozen=True)
class FakeClient(AdminClient):
    """Each admin port's repository index, and every port asked."""

    indexes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)

    def post(self, host: str, port: int, path: str, body: dict[str, Any] | None = None,
             timeout: float = 1.0) -> Any:
        assert path == "/v2/repository/index"
        self.asked.append(port)
        return self.indexes.get(port, [])


def replicas(region: str, pool: str, n: int, first_port: int) -> tuple[Endpoint, ...]:
    return tuple(Endpoint("10.0.0.1", first_port + i, first_port + 1000 + i, f"runtime-{region}-{pool}-r{i + 1}")
                 for i in range(n))


def ready(model: str, version: str) -> dict[str, Any]:
    return {"name": model, "version": version, "state": "READY", "hits": 3, "misses": 1}


def test_residency_is_a_count_per_region_and_version_and_a_row_fits_a_terminal() -> None:
    """Eight replicas with long names used to be one 300-character line per model (and every line padded
    to it, even the `-` ones); a count per region (and per version where they differ) fits 120 columns."""
    def on(region: str, n: int, version: str, state: str = "READY", reason: str = "") -> list[Residency]:
        return [Residency(f"runtime-{region}-cpu-general-r{i + 1}", version, state, reason, region=region,
                          pool="cpu-general") for i in range(n)]

    classifier = ModelRow("classifier", None, "lexicon,lexicon-negation", ["cpu-general"], {"v1": None, "v2": None},
                          ["eu-west-1", "us-east-1"], resident=on("eu-west-1", 4, "v1") + on("us-east-1", 4, "v1")
                          + on("us-east-1", 3, "v2"), replicas={"eu-west-1": 4, "us-east-1": 4})
    router = ModelRow("acme:ticket-router", "acme", "onnx", ["cpu-general"], {"1": 90, "2": 10},
                      ["eu-west-1", "us-east-1"], resident=on("us-east-1", 1, "1") + on("us-east-1", 1, "2"),
                      replicas={"eu-west-1": 4, "us-east-1": 4}, hits=1200, misses=34)
    idle = ModelRow("globex:intent", "globex", "head", ["gpu-small"], {"1": 100}, ["us-east-1"],
                    replicas={"us-east-1": 2})
    broken = ModelRow("acme:tampered", "acme", "onnx", ["cpu-general"], {"1": 100}, ["us-east-1"],
                      resident=on("us-east-1", 2, "1", "FAILED", "sha256 mismatch: " + "ab" * 64),
                      replicas={"us-east-1": 4})
    found = Inventory([classifier, router, idle, broken], [])
    lines = found.render().splitlines()
    table = {line.split()[0]: line for line in lines[1:]}
    # About 130 columns however the replicas are named (the formats and a region mid-load are the widest
    # cells); a failed load's reason, the last cell, is clipped.
    assert max(len(line) for m, line in table.items() if m != "acme:tampered") <= 140, "\n".join(lines)
    assert len(table["acme:tampered"].split("): ", 1)[1]) <= inventory.REASON_SHOWN, table["acme:tampered"]
    assert "eu-west-1 4/4@v1, us-east-1 4/4@v1 3/4@v2" in table["classifier"]
    assert "eu-west-1 0/4, us-east-1 1/4  " in table["acme:ticket-router"]  # each version on one replica
    assert "97% of 1,234" in table["acme:ticket-router"]
    assert "us-east-1 0/2" in table["globex:intent"] and table["globex:intent"].endswith("not loaded")
    assert "FAILED@1 (us-east-1 2/4): sha256 mismatch: abab" in table["acme:tampered"]
    assert "…" in table["acme:tampered"]  # the reason clipped; --json has it whole
    # --json keeps every replica by name, with its region and pool, and each reason whole.
    rows = {r["model"]: r for r in found.to_json()["models"]}
    assert len(rows["classifier"]["resident"]) == 11
    assert {"replica": "runtime-us-east-1-cpu-general-r3", "version": "v2", "state": "READY", "reason": "",
            "bytes": None, "region": "us-east-1", "pool": "cpu-general"} in rows["classifier"]["resident"]
    assert rows["acme:tampered"]["resident"][0]["reason"] == "sha256 mismatch: " + "ab" * 64


def test_without_replicas_the_regions_are_listed_bare() -> None:
    found = Inventory([ModelRow("classifier", None, "lexicon", ["cpu-general"], {"v1": None},
                                ["eu-west-1", "us-east-1"])], [])
    assert found.render().splitlines()[1].split() == ["classifier", "lexicon", "cpu-general", "v1", "eu-west-1,",
                                                      "us-east-1", "-", "not", "loaded"]


def test_only_the_configs_serving_pools_are_asked_not_cell_gateways(cfg: PlatformConfig) -> None:
    """A status page (or endpoints file) lists each cell's gateways as pool `gateway.<cell>`: no model index
    there, and no admin port, which was one 'no admin port known' warning per gateway."""
    gateways = tuple(Endpoint("10.0.0.2", 8080 + i, None, f"gateway-us-east-1-{c}") for i, c in
                     enumerate(["c0", "c1", "vip"]))
    endpoints = EndpointDirectory({
        ("us-east-1", "gateway.c0"): gateways[:1], ("us-east-1", "gateway.c1"): gateways[1:2],
        ("us-east-1", "gateway.vip"): gateways[2:],
        ("us-east-1", "cpu-general"): replicas("us-east-1", "cpu-general", 2, 9000),
        ("us-west-2", "cpu-general"): replicas("us-west-2", "cpu-general", 1, 9100),  # a region not in the config
    })
    client = FakeClient(indexes={10000: [ready("classifier", "v1")], 10001: [ready("classifier", "v1")]})
    found = inventory.build(cfg, endpoints, client=client)
    assert found.unreachable == []
    assert sorted(client.asked) == [10000, 10001]
    classifier = next(r for r in found.rows if r.model == "classifier")
    assert classifier.replicas == {"eu-west-1": 0, "us-east-1": 2}
    assert {x.replica for x in classifier.resident} == {"runtime-us-east-1-cpu-general-r1",
                                                        "runtime-us-east-1-cpu-general-r2"}
    assert set(inventory.serving(cfg, endpoints).by_pool) == {("us-east-1", "cpu-general")}


def test_unreadable_replicas_are_a_few_warning_lines_and_json_keeps_every_one() -> None:
    found = Inventory([], [f"runtime-us-east-1-cpu-general-r{i}: index not readable (Connection refused)"
                           for i in range(1, 301)])
    assert "warning" not in found.render()  # not mixed into the table: the command prints them to stderr
    assert found.warnings() == [
        *(f"warning: runtime-us-east-1-cpu-general-r{i}: index not readable (Connection refused)" for i in range(1, 6)),
        "  ... and 295 more replicas not readable (--json lists every one)"]
    assert len(found.to_json()["unreachable"]) == 300


def test_a_tenant_sees_its_grants_split_and_only_the_regions_it_is_served_in(cfg: PlatformConfig) -> None:
    """The catalog's versions and regions are not what a tenant may call: its grant's split is, in its
    routes' regions."""
    def rows(tenant: str) -> dict[str, ModelRow]:
        return {r.model: r for r in inventory.declared(cfg, tenant)}

    acme, globex, initech = rows("acme"), rows("globex"), rows("initech")
    assert acme["embedder"].versions == {"v1": 90, "v2": 10}
    assert acme["classifier"].versions == {"v1": 100}
    assert acme["classifier"].format == "lexicon"  # v1's loader alone: v2's is not the tenant's
    assert acme["classifier"].regions == ["eu-west-1", "us-east-1"]
    assert globex["classifier"].versions == {"v1": 80, "v2": 20} and globex["classifier"].regions == ["us-east-1"]
    assert initech["classifier"].regions == ["eu-west-1"] and initech["embedder"].versions == {"v1": 50, "v2": 50}
    # Without a tenant: the catalog's versions (each tenant has its own split) in every region that has them.
    assert {r.model: r for r in inventory.declared(cfg)}["classifier"].versions == {"v1": None, "v2": None}
    assert "v1=80% v2=20%" in Inventory(list(globex.values()), []).render()


def test_a_tenants_residency_is_of_its_versions_in_its_regions(cfg: PlatformConfig) -> None:
    """hooli is granted classifier v2 in us-east-1: eu-west-1's replicas are not asked, and v1 there is not
    hooli's to call."""
    endpoints = EndpointDirectory({
        ("us-east-1", "cpu-general"): replicas("us-east-1", "cpu-general", 2, 9000),
        ("eu-west-1", "cpu-general"): replicas("eu-west-1", "cpu-general", 2, 9200),
    })
    both = [ready("classifier", "v1"), ready("classifier", "v2")]
    client = FakeClient(indexes={10000: both, 10001: both, 10200: both[:1], 10201: both[:1]})
    found = inventory.build(cfg, endpoints, "hooli", client=client)
    assert sorted(client.asked) == [10000, 10001]
    (classifier,) = found.rows
    assert classifier.versions == {"v2": 100} and classifier.regions == ["us-east-1"]
    assert {(x.region, x.version) for x in classifier.resident} == {("us-east-1", "v2")}
    assert "us-east-1 2/2  " in found.render()
