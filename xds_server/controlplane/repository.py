"""The control plane's side of the runtimes' OIP model-repository extension (docs/design/0003): list
what a replica holds (`POST /v2/repository/index`) and ask it to unload a tenant's model, or one version of
it, that left the config (`POST /v2/repository/models/<owner>:<name>/unload`). Replicas are found through the endpoints
file, which records each replica's admin port beside its serving port. Every call goes through one
`AdminClient` (xds_server/controlplane/admin_client.py): mutual TLS with the control plane's certificate
when the runtimes serve it.

Every call is best effort with a short timeout: a replica that is down or slow is logged and skipped, and
nothing here ever holds back a publish (a removed model already answers 404 at the gateway).
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.model import PlatformConfig
from xds_server.controlplane.admin_client import TIMEOUT_S, AdminClient, AdminHttpError

log = logging.getLogger("fairshare.controlplane.repository")


@dataclass(frozen=True, order=True)
class Placement:
    """One tenant's own model as routed in one region, on one pool; with ``version``, only that version
    of it (None: every version, the whole model)."""

    region: str
    pool: str
    owner: str
    name: str
    version: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.owner}:{self.name}"

    @property
    def model(self) -> Placement:
        return Placement(self.region, self.pool, self.owner, self.name)

    def __str__(self) -> str:
        return self.qualified if self.version is None else f"{self.qualified} version {self.version}"


def placements(cfg: PlatformConfig | None, *, versions: bool = False,
               tenants: Collection[str] | None = None) -> set[Placement]:
    """Where each own model is routed; ``versions``: one placement per declared version instead;
    ``tenants``: only these tenants' models."""
    if cfg is None:
        return set()
    among = cfg.tenants.values() if tenants is None else [cfg.tenants[t] for t in tenants if t in cfg.tenants]
    return {Placement(region, t.spec.own_models[m].pool, t.id, m, v)
            for t in among for region, names in t.own_routes.items() for m in names
            if m in t.spec.own_models
            for v in (t.spec.own_models[m].versions if versions else (None,))}


def removed(before: PlatformConfig | None, after: PlatformConfig,
            tenants: Collection[str] | None = None) -> list[Placement]:
    """What the replicas of a pool should unload: own models routed before and not now (removed, their
    tenant offboarded, or moved off a pool or region), and versions removed from a model that stays there.
    A version is addressable (``/versions/<v>``) while it is declared, even at 0% of a split, so only a
    version gone from ``versions`` is unloaded. ``tenants``: the only ones that may differ (an incremental
    load's changes), where known."""
    models_after = placements(after, tenants=tenants)
    gone = placements(before, tenants=tenants) - models_after
    gone_versions = {p for p in placements(before, versions=True, tenants=tenants)
                     - placements(after, versions=True, tenants=tenants) if p.model in models_after}
    return sorted(gone | gone_versions, key=lambda p: (p.model, p.version or ""))


def unload(endpoint: Endpoint, qualified: str, version: str | None = None, *, client: AdminClient) -> str | None:
    """Ask one replica to unload `owner:name` (every version, or only ``version``). None when it did (or
    never held it), else why not."""
    if endpoint.admin_port is None:
        return "no admin port known for this replica"
    path = f"/v2/repository/models/{urllib.parse.quote(qualified, safe=':')}/unload"
    try:
        client.post(endpoint.host, endpoint.admin_port, path,
                    {"parameters": {"version": version}} if version is not None else None)
    except AdminHttpError as err:
        if err.status == 404:
            return None  # not loaded there: nothing to unload
        return str(err)
    except (OSError, ValueError) as err:
        return str(err)
    return None


def purge(endpoint: Endpoint, digests: list[str], *, client: AdminClient) -> dict[str, list[str]]:
    """Ask one replica to remove the verified copies of these artefacts (sha256) from its disk cache; what
    it purged, did not hold, or could not remove yet (busy). Raises OSError or ValueError when it cannot be
    asked."""
    if endpoint.admin_port is None:
        raise ValueError("no admin port known for this replica")
    try:
        found = client.post(endpoint.host, endpoint.admin_port, "/v2/repository/artifacts/purge",
                            {"sha256": sorted(set(digests))})
    except AdminHttpError as err:
        raise ValueError(f"the artefact purge answered {err}") from None
    if not isinstance(found, dict):
        raise ValueError(f"the artefact purge answered {type(found).__name__}, not an object")
    return {k: [str(d) for d in found.get(k, [])] for k in ("purged", "absent", "busy")}


def unload_everywhere(gone: Iterable[Placement], endpoints: EndpointDirectory, client: AdminClient) -> None:
    for p in gone:
        for endpoint in endpoints.of(p.region, p.pool):
            reason = unload(endpoint, p.qualified, p.version, client=client)
            where = endpoint.name or f"{endpoint.host}:{endpoint.port}"
            if reason is None:
                log.info("asked %s to unload %s (removed from the config)", where, p)
            else:
                log.warning("could not ask %s to unload %s: %s (it is evicted when the cache needs room)",
                            where, p, reason)


def unload_in_background(gone: list[Placement], endpoints: EndpointDirectory,
                         client: AdminClient) -> threading.Thread | None:
    """Never on the publish path: a thread of its own, so a slow replica delays nothing."""
    if not gone:
        return None
    thread = threading.Thread(target=unload_everywhere, args=(gone, endpoints, client), name="unload-own-models",
                              daemon=True)
    thread.start()
    return thread


def index(endpoint: Endpoint, timeout: float = TIMEOUT_S, *, client: AdminClient) -> list[dict[str, Any]]:
    """What a replica holds, as its repository index says (qualified name, version, state, reason,
    bytes, hits, misses, load seconds). Raises OSError or ValueError when it cannot be asked."""
    if endpoint.admin_port is None:
        raise ValueError("no admin port known for this replica")
    try:
        found = client.post(endpoint.host, endpoint.admin_port, "/v2/repository/index", timeout=timeout)
    except AdminHttpError as err:
        raise ValueError(f"the repository index answered {err}") from None
    if not isinstance(found, list):
        raise ValueError(f"the repository index is not a list: {type(found).__name__}")
    return [e for e in found if isinstance(e, dict)]
