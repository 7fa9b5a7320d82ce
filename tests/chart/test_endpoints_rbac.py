"""The control plane finds the runtimes through the pool Services' EndpointSlices: the chart grants it
exactly list and watch on them, runs it with --endpoints-from kubernetes, and labels the Services the way
the endpoint source selects and reads them."""

from __future__ import annotations

from typing import Any

from tests.chart.helm import by_kind, find
from tests.endpoints.apiserver import matches
from xds_server.cli import _parser as cli_parser
from xds_server.endpoints.kubernetes import KubernetesSettings
from xds_server.endpoints.slices import POOL_LABEL, REGION_LABEL, SlicePorts

ROLE = "fairshare-control-plane-endpointslices"


def test_the_control_plane_may_only_list_and_watch_endpointslices(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for case, manifests in rendered.items():
        role = find(manifests, "Role", ROLE)
        assert role["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                                  "verbs": ["list", "watch"]}], case
        binding = find(manifests, "RoleBinding", ROLE)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fairshare-control-plane",
                                        "namespace": "fairshare"}], case
        # Nothing else grants anything: no other Role, and no cluster-wide grant at all.
        assert [r["metadata"]["name"] for r in by_kind(manifests, "Role")] == [ROLE], case
        assert not by_kind(manifests, "ClusterRole") and not by_kind(manifests, "ClusterRoleBinding"), case


def test_the_control_plane_follows_endpointslices_in_its_namespace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for case in ("defaults", "region:us-east-1", "region:eu-west-1"):
        pod = find(rendered[case], "Deployment", "fairshare-control-plane")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "fairshare-control-plane"
        assert pod["automountServiceAccountToken"] is True, "in-cluster config needs the account's token"
        (container,) = pod["containers"]
        args = cli_parser().parse_args([a.replace("$(POD_IP)", "10.0.0.7") for a in container["args"]])
        assert (args.endpoints_from, args.namespace, args.endpoints) == ("kubernetes", "fairshare", None), case


def test_pool_services_carry_what_the_source_selects_and_reads(rendered: dict[str, list[dict[str, Any]]]) -> None:
    selector, ports = KubernetesSettings().label_selector, SlicePorts()
    for region in ("us-east-1", "eu-west-1"):
        services = [s for s in by_kind(rendered[f"region:{region}"], "Service")
                    if s["metadata"]["labels"].get("app.kubernetes.io/component") == "inference"]
        assert services, region
        port_names = set()
        for svc in services:
            labels = svc["metadata"]["labels"]
            assert matches(selector, labels), svc["metadata"]["name"]
            assert labels[REGION_LABEL] == region and labels[POOL_LABEL]
            port_names |= {p["name"] for p in svc["spec"]["ports"]}
        # Every pool has both: the data-plane port Envoy is sent to, the admin port for the control plane.
        assert port_names == {ports.data, ports.admin}
        # Nothing else in the namespace matches the selector (only pool Services' slices are read).
        others = [s for s in by_kind(rendered[f"region:{region}"], "Service") if s not in services]
        assert not [s["metadata"]["name"] for s in others if matches(selector, s["metadata"]["labels"])]
