"""Gateway memory in the status: OTLP exports on the xDS port land on the node whose ADS stream shares the
connection; an export from a connection with no stream is dropped. (The real Envoy's sink is exercised by
test_status_table.py; this pins the server's side with exports made here.)"""

from __future__ import annotations

import asyncio

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from xds_server.envoy.bootstrap import XDS_CLUSTER, bootstrap
from xds_server.xds import metrics
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore


def _export(allocated: int, other: int = 7) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = metrics._scopes(request.resource_metrics.add()).add()  # type: ignore[attr-defined]
    for name, value in ((metrics.ALLOCATED, allocated), ("http.ingress.downstream_rq_total", other)):
        metric = scope.metrics.add(name=name)
        metric.gauge.data_points.add(as_int=value)
    return request


def test_the_kept_gauges_are_read_and_the_rest_ignored() -> None:
    assert metrics.gauges_of(_export(123_456)) == {metrics.ALLOCATED: 123_456}
    assert metrics.gauges_of(metrics_service_pb2.ExportMetricsServiceRequest()) == {}


def test_an_export_is_recorded_for_the_node_on_the_same_connection_only() -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        async with XdsServer(store, "127.0.0.1", 0) as server, \
                grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
            export = channel.unary_unary(
                f"/{metrics.SERVICE}/{metrics.METHOD}",
                request_serializer=metrics_service_pb2.ExportMetricsServiceRequest.SerializeToString,
                response_deserializer=metrics_service_pb2.ExportMetricsServiceResponse.FromString)
            await export(_export(5_000_000))  # no ADS stream on this connection yet: dropped
            assert store.status()["nodes"] == {}

            # An ADS stream on the same channel (one HTTP/2 connection, as Envoy's xDS cluster has).
            node = base_pb2.Node(id="gw-1", metadata=struct_pb2.Struct(
                fields={"region": struct_pb2.Value(string_value="eu")}))
            requests: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest | None] = asyncio.Queue()
            requests.put_nowait(discovery_pb2.DeltaDiscoveryRequest(
                node=node, type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster"))

            async def requested():  # type: ignore[no-untyped-def]
                while (req := await requests.get()) is not None:
                    yield req

            stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(requested())
            while store.node("gw-1") is None:
                await asyncio.sleep(0.01)
            await export(_export(6_000_000))
            assert store.status()["nodes"]["gw-1"]["memory"]["allocated"] == 6_000_000

            stream.cancel()
            while store.node("gw-1").connected:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            await export(_export(9_000_000))  # the stream is gone: dropped; the old figure stays, with its age
            assert store.status()["nodes"]["gw-1"]["memory"]["allocated"] == 6_000_000

    asyncio.run(scenario())


def test_the_bootstrap_sink_keeps_only_the_memory_gauges_and_goes_to_the_xds_cluster() -> None:
    [sink] = bootstrap("gw", "eu", "127.0.0.1", 18000, 0)["stats_sinks"]
    config = sink["typed_config"]
    assert sink["name"] == "envoy.stat_sinks.open_telemetry"
    assert config["grpc_service"] == {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    tree = config["custom_metric_conversions"]
    assert set(tree["matcher_tree"]["exact_match_map"]["map"]) == set(metrics.KEPT)
    assert tree["on_no_match"]["action"]["typed_config"]["@type"].endswith("SinkConfig.DropAction")
    assert "stats_sinks" not in bootstrap("gw", "eu", "127.0.0.1", 18000, 0, metrics_sink=False)
