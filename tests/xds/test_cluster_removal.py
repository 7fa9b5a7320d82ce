"""Delta ADS removes a cluster only after the routes that used it are gone from Envoy: the routing types
(listeners, scopes, routes) of the new snapshot are sent and ACKed first. Removed in the same push, the
cluster went first (clusters lead the push order) and a request in between got 503 "no cluster"."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from tests.xds.test_ads import DELTA, Ports, _published, make_snapshot
from xds_server.snapshot import CLUSTER, LISTENER, SCOPED_ROUTE
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
