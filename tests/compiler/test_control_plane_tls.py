"""The rate-limit cluster carries mutual TLS to the control plane when platform.gateway.upstream_tls is on
(with control_plane, its default): the gateway's client certificate by file SDS, the control plane's name
checked; the same bytes from every replica (no replica-specific path); plaintext when switched off."""

from __future__ import annotations

import shutil
from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from tests.compiler.test_compile import REPO_CONFIG, compile_dir
from xds_server.compiler import Compiler, naming
from xds_server.controlplane.grpc_tls import CONTROL_PLANE_IDENTITY
from xds_server.envoy.sds import CLIENT_FILE
from xds_server.snapshot import CLUSTER


def ratelimit_cluster(directory: Path, compiler: Compiler | None = None) -> tuple[cluster_pb2.Cluster, str]:
    resource = compile_dir(directory, compiler).snapshots["us-east-1"].of_type(CLUSTER)[naming.RATELIMIT_CLUSTER]
    cluster = cluster_pb2.Cluster()
    resource.packed.Unpack(cluster)
    return cluster, resource.version


def test_the_ratelimit_cluster_checks_the_control_planes_certificate() -> None:
    cluster, _ = ratelimit_cluster(REPO_CONFIG)
    ctx = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(ctx)
    assert ctx.sni == CONTROL_PLANE_IDENTITY
    common = ctx.common_tls_context
    assert common.tls_certificate_sds_secret_configs[0].sds_config.path_config_source.path == \
        f"/etc/fairshare/upstream-tls/{CLIENT_FILE}"
    (san,) = common.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == CONTROL_PLANE_IDENTITY


def test_replicas_compile_the_same_ratelimit_cluster() -> None:
    # Two control planes of one platform: the launcher's SDS directory is the gateways', not theirs.
    one = ratelimit_cluster(REPO_CONFIG, Compiler(ratelimit_address=("cp", 18002), upstream_tls_dir="/run/sds"))
    two = ratelimit_cluster(REPO_CONFIG, Compiler(ratelimit_address=("cp", 18002), upstream_tls_dir="/run/sds"))
    assert one[1] == two[1]


def test_plaintext_when_control_plane_tls_is_off(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, cfg)
    platform = cfg / "platform.yaml"
    text = platform.read_text()
    assert "    control_plane: true\n" in text
    platform.write_text(text.replace("    control_plane: true\n", "    control_plane: false\n"))
    cluster, _ = ratelimit_cluster(cfg)
    assert not cluster.HasField("transport_socket")
