"""The rendered chart's hardening: mutual TLS between gateways and runtimes (cert-manager certificates, SDS
files the compiled clusters name), drain on stop, TLS at the edge, Redis ACLs that the rate-limit backend
really works under (a real redis-server), OPA on loopback, probes that mean what they say."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from inference_images.runtime.tls import GATEWAY_IDENTITY, RUNTIME_IDENTITY
from tests.chart.helm import CHART, HelmError, find, template
from xds_server.auth.keys import KEY_FILE, SigningKey
from xds_server.compiler import upstream_tls
from xds_server.compiler.listener import HEALTH_PATHS
from xds_server.envoy.sds import CHART_CERTS_DIR, CLIENT_FILE, VALIDATION_FILE, sds_documents
from xds_server.local.processes import free_port
from xds_server.offboard.http import purge
from xds_server.ratelimit.backends.base import Hit
from xds_server.ratelimit.backends.redis import RedisBackend

Manifests = list[dict[str, Any]]
REGION = "region:us-east-1"
HEALTH = "/v2/health/ready"


def pod(manifests: Manifests, name: str) -> dict[str, Any]:
    return find(manifests, "Deployment", name)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec["containers"] if c["name"] == name)


def volume_secret(spec: dict[str, Any], mount_path: str, container_name: str) -> str:
    c = container(spec, container_name)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == mount_path]
    (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return str(vol["secret"]["secretName"])


def test_runtimes_serve_mutual_tls_with_the_runtime_certificate(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[REGION]
    for name in ("fairshare-pool-gpu-small", "fairshare-pool-cpu-general"):
        spec = pod(manifests, name)
        runtime = container(spec, "runtime")
        args = runtime["args"]
        assert args[args.index("--tls-dir") + 1] == "/etc/fairshare/tls"
        secret = volume_secret(spec, "/etc/fairshare/tls", "runtime")
        cert = next(m for m in manifests if m["kind"] == "Certificate" and m["spec"]["secretName"] == secret)
        assert cert["spec"]["dnsNames"] == [RUNTIME_IDENTITY]
        assert "server auth" in cert["spec"]["usages"] and "client auth" not in cert["spec"]["usages"]
        # kubelet probes the plaintext health port, which serves the same live/ready answers and nothing else.
        health = int(args[args.index("--health-port") + 1])
        ports = {p["name"]: p["containerPort"] for p in runtime["ports"]}
        assert ports["health"] == health
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert runtime[probe]["httpGet"]["port"] == "health"


def test_gateway_presents_the_client_certificate_through_the_sds_files_the_clusters_name(
        rendered: dict[str, Manifests], spec_values: dict[str, Path]) -> None:
    import yaml

    manifests = rendered[REGION]
    up = yaml.safe_load(spec_values["us-east-1"].read_text())["spec"]["upstreamTls"]
    sds = find(manifests, "ConfigMap", "fairshare-gateway-sds")["data"]
    assert sds == sds_documents(up["sdsDir"], CHART_CERTS_DIR)
    spec = pod(manifests, "fairshare-gateway")
    envoy = container(spec, "envoy")
    mounts = {m["mountPath"]: m["name"] for m in envoy["volumeMounts"]}
    assert {v["name"]: v for v in spec["volumes"]}[mounts[up["sdsDir"]]]["configMap"]["name"] == "fairshare-gateway-sds"
    secret = volume_secret(spec, CHART_CERTS_DIR, "envoy")
    cert = next(m for m in manifests if m["kind"] == "Certificate" and m["spec"]["secretName"] == secret)
    assert cert["spec"]["commonName"] == GATEWAY_IDENTITY and cert["spec"]["usages"][-1] == "client auth"
    # The compiled clusters read exactly these files.
    socket = upstream_tls.transport_socket(up["sdsDir"])
    text = str(socket)
    assert f'{up["sdsDir"]}/{CLIENT_FILE}' in text and f'{up["sdsDir"]}/{VALIDATION_FILE}' in text
    for doc in sds.values():
        for name in ("tls.crt", "tls.key", "ca.crt"):
            if name in doc:
                assert f"{CHART_CERTS_DIR}/{name}" in doc


def test_certificates_come_from_one_platform_ca(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[REGION]
    issuers = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Issuer"}
    ca = find(manifests, "Certificate", "fairshare-platform-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] in issuers
    assert issuers["fairshare-platform-ca"]["spec"]["ca"]["secretName"] == ca["secretName"]
    for name in ("fairshare-gateway-client", "fairshare-runtime"):
        spec = find(manifests, "Certificate", name)["spec"]
        assert spec["issuerRef"]["name"] == "fairshare-platform-ca"
        assert spec["privateKey"]["rotationPolicy"] == "Always"


def test_own_issuer_and_own_secrets_are_honoured(helm_bin: str, spec_values: dict[str, Path]) -> None:
    values = spec_values["us-east-1"]
    mine = template(helm_bin, values, sets=("tls.upstream.certManager.issuerRef.name=corp-ca",
                                            "tls.upstream.certManager.issuerRef.kind=ClusterIssuer"))
    assert not [m for m in mine if m["kind"] == "Issuer"]
    assert find(mine, "Certificate", "fairshare-runtime")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
    own = template(helm_bin, values, sets=("tls.upstream.certManager.enabled=false",
                                           "tls.upstream.existingSecrets.gateway=gw",
                                           "tls.upstream.existingSecrets.runtime=rt",
                                           "tls.upstream.existingSecrets.controlPlane=cp"))
    assert not [m for m in own if m["kind"] == "Certificate"]
    assert volume_secret(pod(own, "fairshare-pool-cpu-general"), "/etc/fairshare/tls", "runtime") == "rt"
    assert volume_secret(pod(own, "fairshare-gateway"), CHART_CERTS_DIR, "envoy") == "gw"
    # Every missing Secret in the one error, not one per attempt.
    with pytest.raises(HelmError) as err:
        template(helm_bin, values, sets=("tls.upstream.certManager.enabled=false",))
    for name in ("gateway", "runtime", "controlPlane"):
        assert f"tls.upstream.existingSecrets.{name} (" in str(err.value), name


def test_gateway_drains_for_longer_than_the_deregistration_delay(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[f"{REGION}+production"]
    spec = pod(manifests, "fairshare-gateway")
    envoy = container(spec, "envoy")
    script = envoy["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert "/healthcheck/fail" in script and "/drain_listeners?graceful" in script
    annotations = find(manifests, "Service", "fairshare-gateway")["metadata"]["annotations"]
    delay = int(annotations["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"].split("=")[1])
    waited = int(script.rsplit("sleep ", 1)[1])
    assert waited >= delay
    assert spec["terminationGracePeriodSeconds"] > waited
    assert envoy["args"][envoy["args"].index("--drain-time-s") + 1] == "30"
    # What the hook fails is what the kubelet and the load balancer ask: the listener's health answer
    # (compiler/listener.py), which is 503 from then on.
    assert re.fullmatch(HEALTH_PATHS, HEALTH)
    assert envoy["readinessProbe"]["httpGet"] == {"path": HEALTH, "port": "http"}
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] == HEALTH
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol"] == "http"


def test_port_443_terminates_tls_at_the_load_balancer(rendered: dict[str, Manifests], helm_bin: str,
                                                     spec_values: dict[str, Path]) -> None:
    svc = find(rendered[f"{REGION}+production"], "Service", "fairshare-gateway")
    annotations = svc["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"].startswith("arn:aws:acm:")
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] == "443"
    assert [p["port"] for p in svc["spec"]["ports"]] == [443]
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["us-east-1"], sets=("gateway.service.port=443",))
    assert "gateway.tls.certificateArn" in str(err.value)


def _arn(region: str) -> str:
    return f"arn:aws:acm:{region}:123456789012:certificate/0b6f1a52-8d2e-4c1f-9a7e-3f5c2d1e4b6a"


def test_each_region_gets_its_own_regions_certificate(rendered: dict[str, Manifests]) -> None:
    """examples/production.yaml serves every region (the docs pair it with eu-west-1 as with us-east-1): each
    region's NLB gets a certificate of that region, since a load balancer can use no other."""
    for region in ("us-east-1", "eu-west-1"):
        svc = find(rendered[f"region:{region}+production"], "Service", "fairshare-gateway")
        arn = svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"]
        assert arn.split(":")[3] == region, (region, arn)


@pytest.mark.parametrize(("sets", "expected"), [
    ((f"gateway.tls.certificateArn={_arn('us-east-1')}",),
     f"gateway.tls.certificateArn: {_arn('us-east-1')} is an ACM certificate in us-east-1, but this render is for "
     "region eu-west-1 (spec.region)"),
    ((f"gateway.tls.certificateArns.eu-west-1={_arn('us-east-1')}",),
     f"gateway.tls.certificateArns.eu-west-1: {_arn('us-east-1')} is an ACM certificate in us-east-1, "
     "not in eu-west-1"),
    # Another region's entry is checked too: it is wrong wherever it is used.
    ((f"gateway.tls.certificateArns.us-east-2={_arn('us-east-1')}",),
     f"gateway.tls.certificateArns.us-east-2: {_arn('us-east-1')} is an ACM certificate in us-east-1, "
     "not in us-east-2"),
    # The operator's own annotation wins over the chart's, so it is what the load balancer gets: checked as well.
    (("gateway.service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-ssl-cert="
      f"{_arn('eu-west-1')}\\,{_arn('us-east-2')}",),
     f"gateway.service.annotations[service.beta.kubernetes.io/aws-load-balancer-ssl-cert]: {_arn('us-east-2')} "
     "is an ACM certificate in us-east-2, but this render is for region eu-west-1"),
], ids=["certificateArn", "certificateArns", "another-region's-entry", "annotation"])
def test_a_certificate_of_another_region_is_refused_naming_both(helm_bin: str, spec_values: dict[str, Path],
                                                                 sets: tuple[str, ...], expected: str) -> None:
    with pytest.raises(HelmError) as err:
        template(helm_bin, spec_values["eu-west-1"], sets=sets)
    assert expected in str(err.value)


def test_a_regions_own_certificate_or_an_iam_one_is_taken(helm_bin: str, spec_values: dict[str, Path]) -> None:
    def cert(*sets: str) -> str:
        svc = find(template(helm_bin, spec_values["eu-west-1"], sets=sets), "Service", "fairshare-gateway")
        return str(svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"])

    # The region's entry wins over the one for any region.
    assert cert(f"gateway.tls.certificateArn={_arn('us-east-1')}",
                f"gateway.tls.certificateArns.eu-west-1={_arn('eu-west-1')}") == _arn("eu-west-1")
    # An IAM server certificate is global.
    iam = "arn:aws:iam::123456789012:server-certificate/gateway"
    assert cert(f"gateway.service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-ssl-cert={iam}") == iam


def test_opa_is_a_loopback_sidecar(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[f"{REGION}+production"]
    opa = container(pod(manifests, "fairshare-control-plane"), "opa")
    assert opa["args"][opa["args"].index("--addr") + 1].startswith("127.0.0.1:")
    assert not [m for m in manifests if m["kind"] in ("Service", "Deployment") and "opa" in m["metadata"]["name"]]


def test_control_plane_probes_mean_what_they_say(rendered: dict[str, Manifests]) -> None:
    cp = container(pod(rendered[REGION], "fairshare-control-plane"), "control-plane")
    assert cp["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert cp["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_signing_key_secret_exists_at_any_replica_count(helm_bin: str, spec_values: dict[str, Path]) -> None:
    for replicas in ("1", "2"):
        manifests = template(helm_bin, spec_values["us-east-1"], sets=(f"controlPlane.replicas={replicas}",))
        secret = find(manifests, "Secret", "fairshare-signing-key")
        assert "signing-key.pem" in secret["data"]
        assert volume_secret(pod(manifests, "fairshare-control-plane"), "/etc/fairshare/signing-key",
                             "control-plane") == "fairshare-signing-key"


def _secrets_needed(manifests: Manifests) -> list[tuple[str, str]]:
    """(workload, Secret) for every Secret a pod cannot start without (volumes and env, optional ones aside)."""
    needed = []
    for m in manifests:
        if m["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        spec = m["spec"]["template"]["spec"]
        for v in spec.get("volumes", []):
            if "secret" in v and not v["secret"].get("optional"):
                needed.append((m["metadata"]["name"], v["secret"]["secretName"]))
        for c in spec.get("initContainers", []) + spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    needed.append((m["metadata"]["name"], ref["name"]))
    return needed


def test_every_secret_a_pod_needs_is_rendered(rendered: dict[str, Manifests]) -> None:
    """A Secret nobody creates holds its pods in ContainerCreating until `helm --wait` times out: with the
    defaults and with each example, the chart makes every one (or a cert-manager Certificate it renders does)."""
    for case, manifests in rendered.items():
        made = {m["metadata"]["name"] for m in manifests if m["kind"] == "Secret"}
        made |= {m["spec"]["secretName"] for m in manifests if m["kind"] == "Certificate"}
        for workload, secret in _secrets_needed(manifests):
            assert secret in made, f"{case}: {workload} needs Secret {secret}, which nothing renders"
    assert _secrets_needed(rendered["region:eu-west-1+production"])


def test_the_production_examples_own_key_recipe_makes_a_key_the_control_plane_reads(
        helm_bin: str, spec_values: dict[str, Path], tmp_path: Path) -> None:
    """examples/production.yaml's commented alternative: its commands make the Secret the line below them
    names, holding the one key `serve --signing-key` reads, in the release's namespace."""
    example = CHART / "examples" / "production.yaml"
    text = example.read_text()
    commands = [line.split("#", 1)[1].strip() for line in text.splitlines() if line.lstrip().startswith("#   ")]
    (openssl,) = [c for c in commands if c.startswith("openssl ")]
    (create,) = [c for c in commands if " create secret generic " in c]
    found = re.search(r"^\s*# signingKeySecret: (\S+)$", text, re.M)
    assert found, "the example shows signingKeySecret as a commented alternative"
    name = found.group(1)
    words = create.split()
    assert words[words.index("generic") + 1] == name
    assert words[words.index("-n") + 1] == "fairshare"  # the namespace the chart is installed into
    assert f"--from-file={KEY_FILE}" in words
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH")
    subprocess.run(openssl.split(), cwd=tmp_path, check=True, capture_output=True, timeout=30)
    assert SigningKey.load(tmp_path / KEY_FILE).kid
    manifests = template(helm_bin, spec_values["eu-west-1"], example, sets=(f"controlPlane.signingKeySecret={name}",))
    assert volume_secret(pod(manifests, "fairshare-control-plane"), "/etc/fairshare/signing-key",
                         "control-plane") == name
    assert not [m for m in manifests if m["kind"] == "Secret" and m["metadata"]["name"] == name]


def _acl(manifests: Manifests) -> tuple[str, str]:
    data = find(manifests, "Secret", "fairshare-redis-auth")["data"]
    return base64.b64decode(data["password"]).decode(), base64.b64decode(data["users.acl"]).decode()


def test_redis_runs_with_acls_and_protected_mode(rendered: dict[str, Manifests]) -> None:
    manifests = rendered[REGION]
    args = container(pod(manifests, "fairshare-redis"), "redis")["args"]
    assert args[args.index("--protected-mode") + 1] == "yes"
    assert args[args.index("--aclfile") + 1] == "/etc/redis/users.acl"
    password, acl = _acl(manifests)
    assert "user default off" in acl
    assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in acl
    assert password not in acl and password not in json.dumps(find(manifests, "Deployment", "fairshare-redis"))


def test_a_rotated_redis_password_restarts_the_control_plane_too(helm_bin: str, spec_values: dict[str, Path]) -> None:
    """values.yaml's rotation (delete fairshare-redis-auth, upgrade) restarts Redis with the new ACL; the control
    plane reads the password from an env var, set only at its start, so its pod template must change with the
    password too, or every replica keeps sending the old one (WRONGPASS: no limits, or 503 on fail-closed
    tiers). `helm template` has no lookup, so each render makes a new password, as a rotation does."""
    def rendered_pair() -> tuple[str, dict[str, Any]]:
        manifests = template(helm_bin, spec_values["us-east-1"])
        password, _ = _acl(manifests)
        return password, find(manifests, "Deployment", "fairshare-control-plane")["spec"]["template"]

    first_password, first = rendered_pair()
    second_password, second = rendered_pair()
    assert first_password != second_password
    assert first != second
    # The annotation hashes the Secret's own password (the one Redis's ACL holds), never the password itself.
    for password, tmpl in ((first_password, first), (second_password, second)):
        digest = hashlib.sha256(hashlib.sha256(password.encode()).hexdigest().encode()).hexdigest()
        assert tmpl["metadata"]["annotations"]["checksum/redis-auth"] == digest
        assert password not in json.dumps(tmpl)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_rate_limit_backend_works_under_the_rendered_acl_and_nothing_else_does(
        rendered: dict[str, Manifests], tmp_path: Path) -> None:
    password, acl = _acl(rendered[REGION])
    (tmp_path / "users.acl").write_text(acl)
    port = free_port()
    args = container(pod(rendered[REGION], "fairshare-redis"), "redis")["args"]
    args = [str(tmp_path / "users.acl") if a == "/etc/redis/users.acl" else a for a in args]
    proc = subprocess.Popen(["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        authed = redis.Redis(host="127.0.0.1", port=port, username="fairshare", password=password)
        deadline = time.monotonic() + 20  # a hang guard for the server's start
        while True:
            try:
                authed.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()  # the default user is off
        with pytest.raises(redis.exceptions.NoPermissionError):
            authed.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            authed.set("other:key", "1")  # outside the rate-limit keys

        async def limit_and_purge() -> tuple[bool, int]:
            # The control plane's URL as the chart writes it, the password expanded as the kubelet would.
            backend = RedisBackend(f"redis://fairshare:{password}@127.0.0.1:{port}/0", timeout_s=2)
            try:
                (decision,) = await backend.do_limit([Hit("fs:rps:acme:embedder", 1000.0, 2000.0, 1.0)])
                return decision.allowed, await purge(backend, "acme")
            finally:
                await backend.close()

        allowed, purged = asyncio.run(limit_and_purge())
        assert allowed is True and purged == 1
    finally:
        proc.terminate()
        proc.wait(10)
