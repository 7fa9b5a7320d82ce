"""Every cluster towards the runtimes carries mutual TLS when platform.gateway.upstream_tls is on: the
gateway's client certificate and the CA by file SDS, the runtimes' name checked; none when it is off."""

from __future__ import annotations

import shutil
from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from inference_images.runtime.tls import RUNTIME_IDENTITY
from tests.compiler.test_compile import REPO_CONFIG, compile_dir
from xds_server.compiler import Compiler
from xds_server.envoy.sds import CLIENT_FILE, CLIENT_SECRET, VALIDATION_FILE, VALIDATION_SECRET
from xds_server.snapshot import CLUSTER

RUNTIME_CLUSTERS = ("tenant/", "own.")


def runtime_clusters(directory: Path, compiler: Compiler | None = None) -> list[cluster_pb2.Cluster]:
    us = compile_dir(directory, compiler).snapshots["us-east-1"]
    out = []
    for name, resource in us.of_type(CLUSTER).items():
        if name.startswith(RUNTIME_CLUSTERS):
            cluster = cluster_pb2.Cluster()
            resource.packed.Unpack(cluster)
            out.append(cluster)
    return out


def test_clusters_to_the_runtimes_present_the_gateway_certificate_over_file_sds() -> None:
    clusters = runtime_clusters(REPO_CONFIG, Compiler(upstream_tls_dir="/run/tls"))
    assert any(c.name.startswith("own.") for c in clusters) and any(c.name.startswith("tenant/") for c in clusters)
    for cluster in clusters:
        assert cluster.transport_socket.name == "envoy.transport_sockets.tls", cluster.name
        ctx = tls_pb2.UpstreamTlsContext()
        cluster.transport_socket.typed_config.Unpack(ctx)
        common = ctx.common_tls_context
        (cert,) = common.tls_certificate_sds_secret_configs
        assert cert.name == CLIENT_SECRET
        assert cert.sds_config.path_config_source.path == f"/run/tls/{CLIENT_FILE}"
        validation = common.combined_validation_context
        assert validation.validation_context_sds_secret_config.name == VALIDATION_SECRET
        assert validation.validation_context_sds_secret_config.sds_config.path_config_source.path == \
            f"/run/tls/{VALIDATION_FILE}"
        (san,) = validation.default_validation_context.match_typed_subject_alt_names
        assert san.matcher.exact == RUNTIME_IDENTITY


def test_the_config_names_the_directory_unless_a_launcher_overrides_it() -> None:
    for cluster in runtime_clusters(REPO_CONFIG):
        ctx = tls_pb2.UpstreamTlsContext()
        cluster.transport_socket.typed_config.Unpack(ctx)
        path = ctx.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.path_config_source.path
        assert path == f"/etc/fairshare/upstream-tls/{CLIENT_FILE}"


def test_plaintext_when_upstream_tls_is_off(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, cfg)
    platform = cfg / "platform.yaml"
    text = platform.read_text()
    assert "  upstream_tls:\n    enabled: true" in text
    platform.write_text(text.replace("  upstream_tls:\n    enabled: true", "  upstream_tls:\n    enabled: false"))
    clusters = runtime_clusters(cfg)
    assert clusters and not any(c.HasField("transport_socket") for c in clusters)
