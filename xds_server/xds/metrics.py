"""Envoy's metrics service (envoy.service.metrics.v3.MetricsService/StreamMetrics), served beside ADS.

Each gateway's bootstrap has the `envoy.stat_sinks.metrics_service` sink pointed at the xDS cluster
(xds_server.envoy.bootstrap), so every Envoy streams its stats to the control plane it already talks
to: no new port, no scraper, and in a cluster nothing but the xDS connection. Of each flush only the
server's own memory gauges are kept (per node, in the SnapshotStore), which is what `fairshare status`
shows per gateway and sums per cell; everything else in the message is dropped as it is parsed.

The wheel we use for Envoy's protos (xds-protos) leaves out this service because its messages embed
Prometheus' client model (io.prometheus.client). The service is small and its wire format is fixed, so
the handful of fields we read are declared here (a descriptor built at import, under our own package
name: only field numbers and the gRPC method path reach the wire) instead of depending on another
generated package.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from xds_server.xds.store import SnapshotStore

log = logging.getLogger("fairshare.xds.metrics")

SERVICE = "envoy.service.metrics.v3.MetricsService"
METHOD = "StreamMetrics"

# The gauges kept: what Envoy's allocator holds for live objects, and what it took from the OS.
ALLOCATED = "server.memory_allocated"
HEAP_SIZE = "server.memory_heap_size"
KEPT = frozenset({ALLOCATED, HEAP_SIZE})

_PACKAGE = "fairshare.wire.metrics"


def _message_classes() -> tuple[type[Any], type[Any]]:
    """StreamMetricsMessage and StreamMetricsResponse, declared with only the fields we read.

    envoy/service/metrics/v3/metrics_service.proto and io/prometheus/client/metrics.proto, by field
    number: StreamMetricsMessage{identifier=1{node=1}, envoy_metrics=2}, MetricFamily{name=1, metric=4},
    Metric{gauge=2{value=1}}. Unknown fields (counters, histograms, labels) are skipped by the parser.
    """
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="fairshare/wire/metrics_service_subset.proto",
                                             package=_PACKAGE, syntax="proto3",
                                             dependency=["envoy/config/core/v3/base.proto"])

    def message(name: str, *fields: tuple[str, int, int, str, int]) -> None:
        fdp.message_type.add(name=name, field=[
            f(name=n, number=num, type=typ, type_name=tn or None, label=label) for n, num, typ, tn, label in fields])

    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Gauge", ("value", 1, f.TYPE_DOUBLE, "", opt))
    message("Metric", ("gauge", 2, f.TYPE_MESSAGE, f".{_PACKAGE}.Gauge", opt))
    message("MetricFamily", ("name", 1, f.TYPE_STRING, "", opt),
            ("metric", 4, f.TYPE_MESSAGE, f".{_PACKAGE}.Metric", rep))
    message("Identifier", ("node", 1, f.TYPE_MESSAGE, ".envoy.config.core.v3.Node", opt))
    message("StreamMetricsMessage", ("identifier", 1, f.TYPE_MESSAGE, f".{_PACKAGE}.Identifier", opt),
            ("envoy_metrics", 2, f.TYPE_MESSAGE, f".{_PACKAGE}.MetricFamily", rep))
    message("StreamMetricsResponse")
    pool = descriptor_pool.DescriptorPool()
    _add_with_dependencies(pool, base_pb2.DESCRIPTOR)
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName(f"{_PACKAGE}.StreamMetricsMessage")),
            get(pool.FindMessageTypeByName(f"{_PACKAGE}.StreamMetricsResponse")))


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, file: Any) -> None:
    # A private pool (ours must not clash with a real metrics_service_pb2 someone imports later) needs
    # Node's file and everything it imports.
    for dep in file.dependencies:
        _add_with_dependencies(pool, dep)
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.AddSerializedFile(file.serialized_pb)


StreamMetricsMessage, StreamMetricsResponse = _message_classes()


def memory_of(message: Any) -> dict[str, int]:
    """The kept gauges of one StreamMetricsMessage, by stat name."""
    found: dict[str, int] = {}
    for family in message.envoy_metrics:
        if family.name in KEPT and family.metric:
            found[family.name] = int(family.metric[0].gauge.value)
    return found


class MetricsService:
    """StreamMetrics for every Envoy: the node comes in the stream's first message, gauges in each."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    async def stream_metrics(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        node_id: str | None = None
        async for message in requests:
            if node_id is None:
                node_id = message.identifier.node.id or None
                if node_id is None:
                    log.warning("metrics stream from %s names no node; its stats are ignored", context.peer())
                    return StreamMetricsResponse()
            found = memory_of(message)
            if found:
                self._store.record_memory(node_id, found.get(ALLOCATED), found.get(HEAP_SIZE))
        return StreamMetricsResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            METHOD: grpc.stream_unary_rpc_method_handler(
                self.stream_metrics,
                request_deserializer=StreamMetricsMessage.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
        })
