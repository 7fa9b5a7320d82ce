"""The transport socket of every cluster towards the runtimes: mutual TLS, certificates over file SDS
(xds_server.envoy.sds says why files). Envoy presents the gateway's client certificate and accepts only
a runtime's server certificate (its DNS name), not any other holder of the platform CA."""

from __future__ import annotations

import functools
from pathlib import PurePosixPath

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from inference_images.runtime.tls import CONTROL_PLANE_IDENTITY, RUNTIME_IDENTITY
from xds_server.envoy.sds import CLIENT_FILE, CLIENT_SECRET, VALIDATION_FILE, VALIDATION_SECRET

TLS_SOCKET = "envoy.transport_sockets.tls"


def _sds(name: str, sds_dir: str, file: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=config_source_pb2.ConfigSource(
        path_config_source=config_source_pb2.PathConfigSource(
            path=str(PurePosixPath(sds_dir) / file),
            watched_directory=base_pb2.WatchedDirectory(path=sds_dir)),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    ))


@functools.lru_cache(maxsize=8)
def transport_socket(sds_dir: str, identity: str = RUNTIME_IDENTITY) -> base_pb2.TransportSocket:
    """Built once per directory and peer; protobuf copies it into each cluster. `identity`: the DNS name
    the peer's server certificate must carry (the runtimes', or the control plane's for the xDS and
    rate-limit clusters: the same client certificate and CA, another name)."""
    context = tls_pb2.UpstreamTlsContext(
        # The peers are reached by pod IP (or a Service), so SNI carries the identity they are checked against.
        sni=identity,
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=common_pb2.TlsParameters(tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2),
            tls_certificate_sds_secret_configs=[_sds(CLIENT_SECRET, sds_dir, CLIENT_FILE)],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.DNS,
                        matcher=string_pb2.StringMatcher(exact=identity))]),
                validation_context_sds_secret_config=_sds(VALIDATION_SECRET, sds_dir, VALIDATION_FILE),
            ),
        ),
    )
    socket = base_pb2.TransportSocket(name=TLS_SOCKET)
    socket.typed_config.Pack(context)
    return socket


def control_plane_socket(sds_dir: str) -> base_pb2.TransportSocket:
    """Envoy towards the control plane (its xDS cluster in the bootstrap, the rate-limit cluster)."""
    return transport_socket(sds_dir, CONTROL_PLANE_IDENTITY)


def stand_in(cluster: cluster_pb2.Cluster, sds_dir: str) -> None:
    """The same socket over SDS files in `sds_dir`: `envoy --mode validate` requires the files a socket
    names to exist, and the control plane that validates does not hold the gateway's (its pod has none)."""
    if cluster.transport_socket.name == TLS_SOCKET:
        cluster.transport_socket.CopyFrom(transport_socket(sds_dir))
