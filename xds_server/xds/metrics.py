"""Each gateway's memory, reported by the gateway itself: Envoy's OpenTelemetry stat sink, served beside
ADS on the xDS port (opentelemetry.proto.collector.metrics.v1.MetricsService/Export).

Why this sink and not Envoy's own metrics service (envoy.stat_sinks.metrics_service): that one streams
every used stat at every flush, and a gateway of 2,500 tenants has about 30,000 of them (per-tenant
cluster stats already dropped): 2.6 MB and about 110 ms of Envoy's CPU per flush, and the control plane
would parse it all to keep two numbers. The OpenTelemetry sink takes a matcher over stat names
(`custom_metric_conversions`) that drops everything but `server.memory_allocated` and
`server.memory_heap_size` inside Envoy: 270 bytes per flush (measured in this change's report).

The export carries no node id, so it is matched to the ADS stream it shares a connection with: the
bootstrap points the sink at the xDS cluster, Envoy multiplexes both on its one HTTP/2 connection to
the control-plane host, and gRPC reports the same peer for both. An export from a peer with no ADS
stream here (with several control-plane replicas, the sink's request may reach another replica than
the stream) is dropped; the next flush usually lands on the stream's replica.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from xds_server.xds.store import SnapshotStore

log = logging.getLogger("fairshare.xds.metrics")

SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
METHOD = "Export"

# The gauges kept: what Envoy's allocator holds for live objects, and what it took from the OS.
ALLOCATED = "server.memory_allocated"
HEAP_SIZE = "server.memory_heap_size"
KEPT = (ALLOCATED, HEAP_SIZE)

_SINK_TYPE = "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"


def stat_sink(cluster: str) -> dict[str, Any]:
    """The bootstrap's stats sink: the kept gauges, every stats flush, to the control plane at `cluster`."""
    def keep(name: str) -> dict[str, Any]:
        return {"action": {"name": f"keep {name}",
                           "typed_config": {"@type": f"{_SINK_TYPE}.ConversionAction", "metric_name": name}}}

    return {
        "name": "envoy.stat_sinks.open_telemetry",
        "typed_config": {
            "@type": _SINK_TYPE,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}},
            # Envoy drops every other stat before serializing anything (an exact-match map: O(1) a stat).
            "custom_metric_conversions": {
                "matcher_tree": {
                    "input": {"name": "stat name", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.stats.v3."
                                 "StatFullNameMatchInput"}},
                    "exact_match_map": {"map": {name: keep(name) for name in KEPT}},
                },
                "on_no_match": {"action": {"name": "drop", "typed_config": {"@type": f"{_SINK_TYPE}.DropAction"}}},
            },
        },
    }


def gauges_of(request: Any) -> dict[str, int]:
    """The kept gauges of one export, by stat name."""
    found: dict[str, int] = {}
    for resource in request.resource_metrics:
        for scope in _scopes(resource):
            for metric in scope.metrics:
                if metric.name in KEPT and metric.gauge.data_points:
                    point = metric.gauge.data_points[-1]
                    found[metric.name] = int(point.as_int if point.HasField("as_int") else point.as_double)
    return found


def _scopes(resource: Any) -> Iterable[Any]:
    # Field 2 of ResourceMetrics: `scope_metrics` in current OTLP, `instrumentation_library_metrics` in the
    # older protos some wheels ship (the same field on the wire).
    return resource.scope_metrics if hasattr(resource, "scope_metrics") else resource.instrumentation_library_metrics


class MetricsService:
    """Export: each gateway's memory gauges into the store, by the node whose ADS stream shares the peer."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    async def export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        found = gauges_of(request)
        if found:
            node = self._store.node_at(context.peer())
            if node is None:
                log.debug("memory report from %s, which has no ADS stream here; dropped", context.peer())
            else:
                self._store.record_memory(node.node_id, found.get(ALLOCATED), found.get(HEAP_SIZE))
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            METHOD: grpc.unary_unary_rpc_method_handler(
                self.export,
                request_deserializer=metrics_service_pb2.ExportMetricsServiceRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
        })
