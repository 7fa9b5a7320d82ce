"""Envoy bootstrap that knows nothing but where the xDS server is.

Everything else (listeners, routes, clusters, endpoints) arrives over ADS, so one bootstrap serves
every gateway of a region and a config change never needs an Envoy restart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from xds_server.compiler import upstream_tls
from xds_server.xds import metrics

XDS_CLUSTER = "fairshare_xds"

# Reconnect quickly after the control plane restarts; Envoy's default backoff grows to 30 s.
_RETRY_BASE = "0.1s"
_RETRY_MAX = "2s"


def bootstrap(
    node_id: str,
    region: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    delta: bool = True,
    cluster: str = "fairshare-gateway",
    stats_matcher: dict[str, Any] | None = None,
    max_downstream_connections: int = 50_000,
    more_xds: Sequence[tuple[str, int]] = (),
    xds_tls_dir: str | None = None,
    cell: str | None = None,
    metrics_sink: bool = True,
) -> dict[str, Any]:
    """An Envoy v3 bootstrap (JSON-able) whose only static config is the way to the xDS server.

    `admin_port` 0 lets Envoy pick one (EnvoyProcess reads it back from --admin-address-path).
    `stats_matcher` is an envoy.config.metrics.v3.StatsMatcher as a dict, e.g.
    {"inclusion_list": {"patterns": [{"prefix": "cluster."}]}}, to keep stats memory down at scale.
    `more_xds`: further control-plane replicas (host, port) in the same xDS cluster: the ADS stream is on
    one of them, and when it breaks Envoy reconnects to another (every replica serves the same snapshot).
    `xds_tls_dir`: the gateway's SDS directory (platform.gateway.upstream_tls.sds_dir): the xDS stream goes
    over mutual TLS with the gateway's client certificate, and only the control plane's certificate
    (CONTROL_PLANE_IDENTITY, platform CA) is accepted; file SDS, so a rotation needs no new bootstrap.
    `metrics_sink`: report Envoy's memory gauges to the control plane at every stats flush (Envoy's default,
    5 s), over the xDS cluster, for `fairshare status` (xds_server.xds.metrics; every other stat is dropped
    inside Envoy).
    """
    ads: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
    config: dict[str, Any] = {
        "node": {"id": node_id, "cluster": cluster,
                 "metadata": {"region": region, **({"cell": cell} if cell is not None else {})}},
        "admin": {"address": _socket_address("127.0.0.1", admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        # Envoy reads the ADS reconnect backoff from envoy_grpc.retry_policy; the
                        # GrpcService-level retry_policy is ignored for xDS streams.
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {
                                "retry_back_off": {"base_interval": _RETRY_BASE, "max_interval": _RETRY_MAX}
                            },
                        },
                    }
                ],
            },
            "lds_config": dict(ads),
            "cds_config": dict(ads),
        },
        "static_resources": {"clusters": [_xds_cluster([(xds_host, xds_port), *more_xds], xds_tls_dir)]},
        "overload_manager": _overload_manager(max_downstream_connections),
    }
    if stats_matcher is not None:
        config["stats_config"] = {"stats_matcher": stats_matcher}
    if metrics_sink:
        config["stats_sinks"] = [metrics.stat_sink(XDS_CLUSTER)]
    return config


def _overload_manager(max_connections: int) -> dict[str, Any]:
    """A ceiling on client connections: a connection flood is refused at accept, not after it has
    exhausted file descriptors and memory for every tenant."""
    return {
        "resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/"
                         "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": max_connections,
            },
        }],
    }


def _xds_cluster(addresses: Sequence[tuple[str, int]], tls_dir: str | None = None) -> dict[str, Any]:
    try:
        for host, _ in addresses:
            ipaddress.ip_address(host)
        discovery = "STATIC"
    except ValueError:
        # A name (the control plane's Service): every address it resolves to is a replica.
        discovery = "STRICT_DNS"
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": discovery,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}
                                            for host, port in addresses]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    # Pings notice a dead control plane (no RST, e.g. a vanished VM) within seconds.
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        "upstream_connection_options": {"tcp_keepalive": {}},
    }
    if tls_dir is not None:
        cluster["transport_socket"] = json_format.MessageToDict(upstream_tls.control_plane_socket(tls_dir))
    return cluster


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}
