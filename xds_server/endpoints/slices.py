"""EndpointSlices (discovery.k8s.io/v1, as JSON) -> EndpointDirectory.

Each pool has two Services in the chart: the data-plane one (port `http`) and the admin one (port
`admin`, which also lists not-ready replicas). Their slices carry the Services' labels
`fairshare.io/region` and `fairshare.io/pool` (the EndpointSlice controller copies a Service's labels).
Membership comes from the data-plane slices only; the admin slices add each replica's admin port."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xds_server.compiler.endpoints import Endpoint, EndpointDirectory

log = logging.getLogger("fairshare.endpoints")

REGION_LABEL = "fairshare.io/region"
POOL_LABEL = "fairshare.io/pool"


@dataclass(frozen=True)
class SlicePorts:
    data: str = "http"
    admin: str = "admin"


def directory(slices: Iterable[Mapping[str, Any]], ports: SlicePorts = SlicePorts()) -> EndpointDirectory:
    members: dict[tuple[str, str], dict[tuple[str, int], Endpoint]] = {}
    admin: dict[tuple[str, str, str], int] = {}
    for s in slices:
        labels = (s.get("metadata") or {}).get("labels") or {}
        region, pool = labels.get(REGION_LABEL), labels.get(POOL_LABEL)
        if not region or not pool:
            _skip(s, f"no {REGION_LABEL} or {POOL_LABEL} label")
            continue
        named = {p.get("name"): p.get("port") for p in s.get("ports") or [] if isinstance(p, Mapping)}
        data_port, admin_port = named.get(ports.data), named.get(ports.admin)
        if s.get("addressType", "IPv4") == "FQDN" or (data_port is None and admin_port is None):
            continue  # not one of ours (another Service's port, or a hand-written FQDN slice)
        for ep in s.get("endpoints") or []:
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            host = str(addresses[0])  # the API: consumers treat a slice endpoint's addresses as one
            if admin_port is not None:
                admin[(region, pool, host)] = int(admin_port)
            if data_port is None:
                continue
            draining = _state(ep.get("conditions") or {})
            if draining is None:
                continue
            ref = ep.get("targetRef") or {}
            e = Endpoint(host, int(data_port), None, ref.get("name") or None, draining)
            pool_members = members.setdefault((region, pool), {})
            known = pool_members.get((host, e.port))
            # A replica moving between slices can briefly be in two: the serving state wins over draining.
            if known is None or (known.draining and not draining):
                pool_members[(host, e.port)] = e
    return EndpointDirectory({
        key: tuple(sorted(Endpoint(e.host, e.port, admin.get((*key, e.host)), e.name, e.draining)
                          for e in eps.values()))
        for key, eps in sorted(members.items()) if eps
    })


def _state(conditions: Mapping[str, Any]) -> bool | None:
    """None: leave out; False: serves; True: drains. The API says an unset ready or serving means
    ready/serving, an unset terminating means not terminating."""
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving", conditions.get("ready")) is not False
    terminating = conditions.get("terminating") is True
    if terminating:
        return True if serving else None
    return False if ready else None


def _skip(s: Mapping[str, Any], why: str) -> None:
    log.debug("EndpointSlice %s skipped: %s", (s.get("metadata") or {}).get("name"), why)
