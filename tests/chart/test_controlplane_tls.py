"""The rendered chart's control-plane hops: xDS and the rate-limit service over mutual TLS (the control
plane's cert-manager certificate at --tls-dir, the gateway's bootstrap dialling with its client certificate
over the SDS files the chart mounts), and the Redis password kept out of the arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import HelmError, admission_violations, template
from tests.chart.test_hardening import REGION, Manifests, container, pod, volume_secret
from xds_server.compiler import upstream_tls
from xds_server.controlplane.grpc_tls import CONTROL_PLANE_IDENTITY
from xds_server.envoy.bootstrap import XDS_CLUSTER

TLS_DIR = "/etc/fairshare/controlplane-tls"


def test_the_control_plane_serves_grpc_with_its_own_certificate(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[REGION]
    spec = pod(manifests, "fairshare-control-plane")
    args = container(spec, "control-plane")["args"]
    assert args[args.index("--tls-dir") + 1] == TLS_DIR
    secret = volume_secret(spec, TLS_DIR, "control-plane")
    cert = next(m for m in manifests if m["kind"] == "Certificate" and m["spec"]["secretName"] == secret)
    names = cert["spec"]["dnsNames"]
    # The name Envoy checks first; the Service's names for anything that dials it by DNS.
    assert names[0] == CONTROL_PLANE_IDENTITY
    assert "fairshare-control-plane.fairshare.svc.cluster.local" in names
    assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
    assert not [v for v in admission_violations(manifests) if v["rule"] == "control-plane-requires-mutual-tls"]


def test_the_gateway_dials_the_control_plane_over_mutual_tls(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[REGION]
    boots = [json.loads(m["data"]["bootstrap.json"]) for m in manifests
             if m["kind"] == "ConfigMap" and "bootstrap.json" in m.get("data", {})]
    (xds,) = [c for b in boots for c in b["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER]
    socket: dict[str, Any] = xds["transport_socket"]
    ctx = socket["typedConfig"]
    assert ctx["sni"] == CONTROL_PLANE_IDENTITY
    sds = ctx["commonTlsContext"]["tlsCertificateSdsSecretConfigs"][0]["sdsConfig"]["pathConfigSource"]["path"]
    # The same SDS files as the runtime clusters' (mounted in the gateway pod), not a copy for the bootstrap.
    runtime_sds = upstream_tls.transport_socket("/etc/fairshare/upstream-tls")
    assert sds.startswith("/etc/fairshare/upstream-tls/") and runtime_sds.name == socket["name"]
    gateway = pod(manifests, "fairshare-gateway")
    mounts = [m["mountPath"] for m in container(gateway, "envoy")["volumeMounts"]]
    assert "/etc/fairshare/upstream-tls" in mounts


def test_the_redis_password_is_not_in_any_argument(rendered: dict[str, Manifests]) -> None:
    for name, manifests in rendered.items():
        assert not [v for v in admission_violations(manifests) if v["rule"] == "no-password-in-arguments"], name


def test_own_secret_for_the_control_plane(helm_bin: str, spec_values: dict[str, Path]) -> None:
    values = spec_values["us-east-1"]
    off = ("tls.upstream.certManager.enabled=false", "tls.upstream.existingSecrets.gateway=gw",
           "tls.upstream.existingSecrets.runtime=rt")
    own = template(helm_bin, values, sets=(*off, "tls.upstream.existingSecrets.controlPlane=cp"))
    assert volume_secret(pod(own, "fairshare-control-plane"), TLS_DIR, "control-plane") == "cp"
    with pytest.raises(HelmError) as err:
        template(helm_bin, values, sets=off)
    assert "existingSecrets.controlPlane" in str(err.value)


def test_every_missing_secret_is_named_at_once(helm_bin: str, spec_values: dict[str, Path]) -> None:
    values = spec_values["us-east-1"]
    off = "tls.upstream.certManager.enabled=false"
    with pytest.raises(HelmError) as err:
        template(helm_bin, values, sets=(off, "tls.upstream.existingSecrets.gateway=gw"))
    assert "existingSecrets.runtime (" in str(err.value) and "existingSecrets.controlPlane (" in str(err.value)
    assert "existingSecrets.gateway (" not in str(err.value)
    # With the control plane's hops in plaintext (platform.yaml control_plane: false) it needs no Secret.
    with pytest.raises(HelmError) as err:
        template(helm_bin, values, sets=(off, "spec.upstreamTls.controlPlane=false"))
    assert "existingSecrets.gateway (" in str(err.value) and "existingSecrets.runtime (" in str(err.value)
    assert "existingSecrets.controlPlane" not in str(err.value)
