"""Many tenants compiled at once (a first load, a policy or catalog change) in worker processes, a share each
(xds_server/workers.py); each tenant's resources come back as the bytes the compiler would have packed here,
so the snapshots are the same, byte for byte, as a compile in one process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.config.core.v3.base_pb2 import TransportSocket

from xds_server.config.model import PlatformConfig, ResolvedTenant
from xds_server.snapshot import Resource
from xds_server.workers import fork_map, worker_count

# One tenant's resources in one region (compile.py's _compile_tenant).
CompileOne = Callable[[PlatformConfig, ResolvedTenant, str, TransportSocket | None], list[Resource]]
# A resource as it crosses the pipe: name, type URL, payload, version.
_Wire = tuple[str, str, bytes, str]


def compile_tenants(compile_one: CompileOne, cfg: PlatformConfig, tls: TransportSocket | None,
                    pending: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[Resource, ...]]:
    """Each (region, tenant) of `pending` compiled, by worker processes where there are enough of them;
    empty where there are not, or a worker failed (the compiler then compiles them itself, as it would)."""
    workers = worker_count(len(pending), cfg.platform.controlplane.workers)
    if workers < 2:
        return {}
    parts = fork_map(_compile_part, (compile_one, cfg, tls), pending, workers, "compiling tenants")
    if parts is None:
        return {}
    out: dict[tuple[str, str], tuple[Resource, ...]] = {}
    for pair, wired in zip(pending, (w for part in parts for w in part), strict=True):
        out[pair] = tuple(Resource.of_bytes(name, type_url, value, version) for name, type_url, value, version in wired)
    return out


def _compile_part(context: tuple[CompileOne, PlatformConfig, TransportSocket | None],
                  part: Sequence[tuple[str, str]]) -> list[list[_Wire]]:
    compile_one, cfg, tls = context
    return [[(r.name, r.type_url, r.packed.value, r.version) for r in compile_one(cfg, cfg.tenants[tid], region, tls)]
            for region, tid in part]
