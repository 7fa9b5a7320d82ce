"""EndpointSlices -> the directory the compiler reads: ready replicas serve, terminating ones that still
serve drain, the rest are left out; admin ports come from the admin Service's slices."""

from __future__ import annotations

from tests.endpoints.apiserver import endpoint_slice
from xds_server.compiler.endpoints import Endpoint
from xds_server.endpoints.slices import directory

US = "us-east-1"


def test_conditions_map_to_serving_draining_or_left_out() -> None:
    d = directory([endpoint_slice("cpu-a", US, "cpu", [
        ("10.0.0.1", "ready", "cpu-1"), ("10.0.0.2", "terminating", "cpu-2"),
        ("10.0.0.3", "terminated", "cpu-3"), ("10.0.0.4", "unready", "cpu-4")], 8080)])
    assert [(e.host, e.port, e.draining, e.name) for e in d.of(US, "cpu")] == [
        ("10.0.0.1", 8080, False, "cpu-1"), ("10.0.0.2", 8080, True, "cpu-2")]


def test_unset_conditions_mean_ready_as_the_api_says() -> None:
    s = endpoint_slice("cpu-a", US, "cpu", [("10.0.0.1", "ready", None)], 8080)
    s["endpoints"][0]["conditions"] = {}
    assert directory([s]).of(US, "cpu") == (Endpoint("10.0.0.1", 8080),)


def test_admin_port_joins_from_the_admin_services_slice_and_is_never_an_endpoint() -> None:
    data = endpoint_slice("cpu-a", US, "cpu", [("10.0.0.1", "ready", "p1"), ("10.0.0.2", "ready", "p2")], 8080)
    # The admin Service lists not-ready replicas too (publishNotReadyAddresses): it adds no member.
    admin = endpoint_slice("cpu-admin-a", US, "cpu", [("10.0.0.1", "ready", "p1"), ("10.0.0.9", "unready", "p9")],
                           9090, port_name="admin", service="fairshare-pool-cpu-admin")
    eps = directory([admin, data]).of(US, "cpu")
    assert [(e.host, e.port, e.admin_port) for e in eps] == [("10.0.0.1", 8080, 9090), ("10.0.0.2", 8080, None)]


def test_pools_and_regions_come_from_the_labels_and_other_slices_are_ignored() -> None:
    eu = endpoint_slice("gpu-a", "eu-west-1", "gpu", [("10.1.0.1", "ready", None)], 8080)
    unlabelled = endpoint_slice("x", US, "cpu", [("10.9.9.9", "ready", None)], 8080)
    del unlabelled["metadata"]["labels"]["fairshare.io/region"]
    other_port = endpoint_slice("y", US, "cpu", [("10.9.9.8", "ready", None)], 8080, port_name="metrics")
    d = directory([eu, unlabelled, other_port])
    assert set(d.by_pool) == {("eu-west-1", "gpu")}
    assert d.of("eu-west-1", "gpu") == (Endpoint("10.1.0.1", 8080),)


def test_a_replica_in_two_slices_at_once_counts_once_and_serving_wins() -> None:
    old = endpoint_slice("cpu-a", US, "cpu", [("10.0.0.1", "terminating", "p1")], 8080)
    new = endpoint_slice("cpu-b", US, "cpu", [("10.0.0.1", "ready", "p1")], 8080)
    for order in ([old, new], [new, old]):
        assert [(e.host, e.draining) for e in directory(order).of(US, "cpu")] == [("10.0.0.1", False)]


def test_draining_is_part_of_an_endpoints_identity() -> None:
    # The control plane republishes when a replica starts draining: equality must see it.
    assert Endpoint("10.0.0.1", 8080) != Endpoint("10.0.0.1", 8080, draining=True)
