"""Where the runtime replicas are, behind one interface (`EndpointSource`): the static file `fairshare run`
writes, or the Kubernetes EndpointSlices of the pool Services. The compiler only ever sees the
`EndpointDirectory` a source hands over."""

from __future__ import annotations

from pathlib import Path

from xds_server.endpoints.source import EndpointSource

__all__ = ["SOURCES", "EndpointSource", "open_source"]

SOURCES = ("file", "kubernetes")


def open_source(kind: str, endpoints_file: Path | None = None, kubeconfig: Path | None = None,
                namespace: str | None = None) -> EndpointSource | None:
    """`file`: the endpoints file (None without one: no endpoints); `kubernetes`: the pool Services'
    EndpointSlices, through in-cluster config or `kubeconfig`."""
    if kind == "kubernetes":
        from xds_server.endpoints.kubernetes import KubernetesEndpoints, KubernetesSettings

        return KubernetesEndpoints(KubernetesSettings(namespace=namespace, kubeconfig=kubeconfig))
    if kind != "file":
        raise ValueError(f"unknown endpoint source {kind!r} (one of {', '.join(SOURCES)})")
    if endpoints_file is None:
        return None
    from xds_server.endpoints.static import StaticEndpoints

    return StaticEndpoints(endpoints_file)
