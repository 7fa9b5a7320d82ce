"""Delta ADS removes a cluster only after the routes that used it are gone from Envoy: the routing types
(listeners, scopes, routes) of the new snapshot are sent and ACKed first. Removed in the same push, the
cluster went first (clusters lead the push order) and a request in between got 503 "no cluster"."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from tests.xds.test_ads import DELTA, Ports, _assignment, _eds_cluster, _published, make_snapshot
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, Resource, Snapshot
from xds_server.xds.delta import DeltaStream
from xds_server.xds.store import SnapshotStore


def ack(stream: DeltaStream, resp: discovery_pb2.DeltaDiscoveryResponse) -> list[discovery_pb2.DeltaDiscoveryResponse]:
    return stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce))


def test_a_cluster_leaves_only_after_the_scope_that_routed_to_it() -> None:
    store, ports = SnapshotStore(), Ports()
    node = store.open_stream("n", "eu", DELTA)
    stream = DeltaStream(store, node)
    stream.on_snapshot(_published(store, "eu", make_snapshot("v1", ports, "v1", tenants=("a", "b"))))
    for type_url in (CLUSTER, LISTENER, SCOPED_ROUTE):
        [resp] = stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url))
        assert ack(stream, resp) == []
    assert node.applied_seq == store.published("eu").seq  # type: ignore[union-attr]

    # Tenant b and the canary cluster go in one snapshot: the scope is removed, the cluster is held.
    pushed = stream.on_snapshot(_published(store, "eu", make_snapshot("v2", ports, "v2", tenants=("a",),
                                                                        clusters=("backend",))))
    assert [r.type_url for r in pushed] == [SCOPED_ROUTE]
    assert list(pushed[0].removed_resources) == ["tenant-b"]
    assert node.applied_seq != store.published("eu").seq  # type: ignore[union-attr]
    # Envoy ACKs the scope removal: now the cluster goes, and only then is the snapshot applied.
    [removal] = ack(stream, pushed[0])
    assert removal.type_url == CLUSTER and list(removal.removed_resources) == ["backend-canary"]
    assert ack(stream, removal) == []
    assert node.applied_seq == store.published("eu").seq  # type: ignore[union-attr]


def test_a_rejected_scope_keeps_the_cluster() -> None:
    from google.rpc import status_pb2

    store, ports = SnapshotStore(), Ports()
    node = store.open_stream("n", "eu", DELTA)
    stream = DeltaStream(store, node)
    stream.on_snapshot(_published(store, "eu", make_snapshot("v1", ports, "v1", tenants=("a", "b"))))
    for type_url in (CLUSTER, SCOPED_ROUTE):
        [resp] = stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url))
        ack(stream, resp)
    [srds] = stream.on_snapshot(_published(store, "eu", make_snapshot("v2", ports, "v2", tenants=("a",),
                                                                        clusters=("backend",))))
    nack = discovery_pb2.DeltaDiscoveryRequest(type_url=SCOPED_ROUTE, response_nonce=srds.nonce,
                                               error_detail=status_pb2.Status(code=3, message="bad scope"))
    # Envoy still routes by the old scopes, which may name the cluster: it stays.
    assert stream.on_request(nack) == []


def _clusters_on(version: str, clusters: dict[str, str]) -> Snapshot:
    """Clusters (name -> the endpoint set it reads) and every set they read."""
    return Snapshot.build(version, [
        *(Resource.pack(name, _eds_cluster(name, eds)) for name, eds in clusters.items()),
        *(Resource.pack(eds, _assignment(eds, 9001)) for eds in sorted(set(clusters.values()))),
    ])


def test_only_the_endpoints_a_sent_cluster_reads_are_resent() -> None:
    """Envoy applies a resent endpoint set to every cluster reading it (thousands of tenant clusters share
    one): a new cluster gets the set it reads again, the other sets are not resent, and a response that
    only removes clusters is followed by no endpoints at all (an offboarding's removal)."""
    store = SnapshotStore()
    node = store.open_stream("n", "eu", DELTA)
    stream = DeltaStream(store, node)
    stream.on_snapshot(_published(store, "eu", _clusters_on("v1", {"a": "set-a", "b": "set-b"})))
    for type_url in (CLUSTER, LISTENER):  # no listener: the wildcard subscription's one empty answer
        [resp] = stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url))
        assert ack(stream, resp) == []
    [eds] = stream.on_request(discovery_pb2.DeltaDiscoveryRequest(
        type_url=ENDPOINT, resource_names_subscribe=["set-a", "set-b"]))
    assert ack(stream, eds) == []

    # A new cluster on a set Envoy holds subscribes to nothing new: that set, and only it, comes again.
    pushed = stream.on_snapshot(_published(store, "eu", _clusters_on("v2", {"a": "set-a", "b": "set-b",
                                                                            "c": "set-a"})))
    assert [(r.type_url, [x.name for x in r.resources]) for r in pushed] == [(CLUSTER, ["c"]),
                                                                              (ENDPOINT, ["set-a"])]
    for resp in pushed:
        ack(stream, resp)
    assert node.applied_seq == store.published("eu").seq  # type: ignore[union-attr]

    # Removing it warms no cluster: the removal alone, and the snapshot is applied once Envoy ACKs it.
    [removal] = stream.on_snapshot(_published(store, "eu", _clusters_on("v3", {"a": "set-a", "b": "set-b"})))
    assert removal.type_url == CLUSTER and list(removal.removed_resources) == ["c"] and not removal.resources
    assert ack(stream, removal) == []
    assert node.applied_seq == store.published("eu").seq  # type: ignore[union-attr]
