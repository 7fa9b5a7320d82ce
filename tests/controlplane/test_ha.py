"""Two control planes on one config, two Envoys, a runtime and Redis, all real: every replica compiles the
same snapshot, and losing one under load (SIGKILL) fails no request, moves every Envoy to the survivor and
churns nothing (same versions, no listener or cluster rebuilt or drained)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cluster_ha
from xds_server.controlplane import healthcheck
from xds_server.envoy.bootstrap import XDS_CLUSTER
from xds_server.local.platform import LocalPlatform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with cluster_ha.running(tmp_path_factory.mktemp("ha")) as platform:
        yield platform


def test_replicas_publish_identical_snapshots(pair: LocalPlatform) -> None:
    first, second = cluster_ha.versions(pair, 0), cluster_ha.versions(pair, 1)
    assert first["config"] is not None
    assert first == second


def test_every_envoy_lists_every_replica(pair: LocalPlatform) -> None:
    for envoy in pair.envoys.values():
        dump = envoy.admin_json("/config_dump")
        [xds] = [c["cluster"] for cfg in dump["configs"] for c in cfg.get("static_clusters", [])
                 if c["cluster"]["name"] == XDS_CLUSTER]
        ports = sorted(e["endpoint"]["address"]["socket_address"]["port_value"]
                       for e in xds["load_assignment"]["endpoints"][0]["lb_endpoints"])
        assert ports == sorted(p for p, _ in pair.control_plane_ports)
    # Shared rate-limit counters: the config names memory, so the launcher gave both replicas a Redis.
    assert pair.redis is not None and pair.redis_url == pair.redis.url


def test_each_replica_answers_its_peers_for_the_envoys_connected_to_it(pair: LocalPlatform) -> None:
    """Moves between cells wait on every replica's Envoys (xds_server/cells/peers.py): the launcher gave each
    replica the others' status ports, and each answers, on its own, for the Envoys connected to it."""
    import urllib.request

    from xds_server.cells import peers

    addresses = sorted(f"{pair.opts.host}:{status}" for _, status in pair.control_plane_ports)
    region = cluster_ha.REGION
    assert pair.config is not None
    tenant = sorted(t for t, r in pair.config.tenants.items() if region in r.routes)[0]
    answers = []
    for index, (_, status) in enumerate(pair.control_plane_ports):
        assert sorted(pair.control_plane_status(index)["peers"]["addresses"]) == addresses
        body = json.dumps({"held": [[region, tenant], [region, "nobody"]], "routed": []}).encode()
        request = urllib.request.Request(f"http://{pair.opts.host}:{status}{peers.PATH}", data=body, method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            answers.append(json.load(resp))
    assert answers[0]["replica"] != answers[1]["replica"]
    # Between them they vouch for every Envoy of the region holding the tenant, and none for a stranger
    # (an Envoy connected there holds no such tenant: None, unless none is connected there: 0).
    assert sum(a["held"][0] for a in answers) == len(cluster_ha.node_ids(pair))
    assert all(a["held"][1] in (None, 0) for a in answers) and any(a["held"][1] is None for a in answers)


def test_losing_a_replica_under_load(pair: LocalPlatform) -> None:
    assert all(healthcheck.check(pair.opts.host, status, 2.0) for _, status in pair.control_plane_ports)
    lost = cluster_ha.loss(pair, seconds=3.0)
    assert lost["envoys_moved"], "the killed replica held at least one Envoy's stream"
    assert lost["failed"] == 0, f"failed requests during the loss: {json.dumps(lost['failures'])}"
    survivor = 1 - [pair.control_plane_name(i) for i in range(2)].index(lost["victim"])
    # Every Envoy is on the survivor, running the version it published before the loss.
    assert cluster_ha.connected_to(pair, survivor) == sorted(cluster_ha.node_ids(pair))
    assert lost["versions_after"] == lost["versions_before"]
    churned = {stat: by_gateway for stat, by_gateway in lost["churn"].items() if any(by_gateway.values())}
    assert not churned, f"config churn on reconnect: {churned}"
    # The image's health probe tells the dead replica from the live one.
    _, dead_status = pair.control_plane_ports[1 - survivor]
    assert not healthcheck.check(pair.opts.host, dead_status, 2.0)
    assert healthcheck.check(pair.opts.host, pair.control_plane_ports[survivor][1], 2.0)


def test_run_flag_reaches_the_launcher() -> None:
    from xds_server.cli import _parser

    args = _parser().parse_args(["run", "--control-planes", "2"])
    assert args.control_planes == 2
    assert _parser().parse_args(["run"]).control_planes is None
    assert Path(cluster_ha.__file__).name == "cluster_ha.py"
