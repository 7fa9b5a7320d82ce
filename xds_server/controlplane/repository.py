"""The control plane's side of the runtimes' OIP model-repository extension (docs/design/0003): list
what a replica holds (`POST /v2/repository/index`) and ask it to unload a tenant's model that left the
config (`POST /v2/repository/models/<owner>:<name>/unload`). Replicas are found through the endpoints
file, which records each replica's admin port beside its serving port.

Every call is best effort with a short timeout: a replica that is down or slow is logged and skipped, and
nothing here ever holds back a publish (a removed model already answers 404 at the gateway).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory
from xds_server.config.model import PlatformConfig

log = logging.getLogger("fairshare.controlplane.repository")

TIMEOUT_S = 2.0


@dataclass(frozen=True, order=True)
class Placement:
    """One tenant's own model as routed in one region, on one pool."""

    region: str
    pool: str
    owner: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.owner}:{self.name}"


def placements(cfg: PlatformConfig | None) -> set[Placement]:
    if cfg is None:
        return set()
    return {Placement(region, t.spec.own_models[m].pool, t.id, m)
            for t in cfg.tenants.values() for region, names in t.own_routes.items() for m in names
            if m in t.spec.own_models}


def removed(before: PlatformConfig | None, after: PlatformConfig) -> list[Placement]:
    """Own models routed before and not now (removed, their tenant offboarded, or moved off a pool or
    region), which the replicas of their old pool should unload."""
    return sorted(placements(before) - placements(after))


def _post(url: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT_S) -> Any:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def unload(endpoint: Endpoint, qualified: str) -> str | None:
    """Ask one replica to unload `owner:name`. None when it did (or never held it), else why not."""
    if endpoint.admin_url is None:
        return "no admin port known for this replica"
    url = f"{endpoint.admin_url}/v2/repository/models/{urllib.parse.quote(qualified, safe=':')}/unload"
    try:
        _post(url)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None  # not loaded there: nothing to unload
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))
    return None


def unload_everywhere(gone: Iterable[Placement], endpoints: EndpointDirectory) -> None:
    for p in gone:
        for endpoint in endpoints.of(p.region, p.pool):
            reason = unload(endpoint, p.qualified)
            where = endpoint.name or f"{endpoint.host}:{endpoint.port}"
            if reason is None:
                log.info("asked %s to unload %s (removed from the config)", where, p.qualified)
            else:
                log.warning("could not ask %s to unload %s: %s (it is evicted when the cache needs room)",
                            where, p.qualified, reason)


def unload_in_background(gone: list[Placement], endpoints: EndpointDirectory) -> threading.Thread | None:
    """Never on the publish path: a thread of its own, so a slow replica delays nothing."""
    if not gone:
        return None
    thread = threading.Thread(target=unload_everywhere, args=(gone, endpoints), name="unload-own-models",
                              daemon=True)
    thread.start()
    return thread


def index(endpoint: Endpoint, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """What a replica holds, as its repository index says (qualified name, version, state, reason,
    bytes, hits, misses, load seconds). Raises OSError or ValueError when it cannot be asked."""
    if endpoint.admin_url is None:
        raise ValueError("no admin port known for this replica")
    found = _post(f"{endpoint.admin_url}/v2/repository/index", timeout=timeout)
    if not isinstance(found, list):
        raise ValueError(f"the repository index is not a list: {type(found).__name__}")
    return [e for e in found if isinstance(e, dict)]
