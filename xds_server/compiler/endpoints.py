"""Where each region's pools run. Locally the launcher writes it; in a cluster it comes from the
pool Services. Kept apart from the tenant spec: endpoints change with scaling, tenants with contracts."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import yaml
from pydantic import Field

from xds_server.config.errors import ConfigError, Problem
from xds_server.config.loader import parse_yaml, validate
from xds_server.config.model import Strict


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int
    # The replica's admin port (the OIP model-repository extension): for the control plane's unload
    # requests and `fairshare models`, never for Envoy. Not part of the endpoint's identity.
    admin_port: int | None = dc_field(default=None, compare=False)
    name: str | None = dc_field(default=None, compare=False)  # the replica, for people
    # Terminating but still serving (Kubernetes' `terminating` + `serving`): Envoy sends it no new
    # requests while in-flight ones finish. Part of identity: draining is a change Envoy must see.
    draining: bool = False

    @property
    def admin_url(self) -> str | None:
        return None if self.admin_port is None else f"http://{self.host}:{self.admin_port}"


@dataclass(frozen=True)
class EndpointDirectory:
    by_pool: dict[tuple[str, str], tuple[Endpoint, ...]] = dc_field(default_factory=dict)

    def of(self, region: str, pool: str) -> tuple[Endpoint, ...]:
        return self.by_pool.get((region, pool), ())

    @classmethod
    def load(cls, path: str | Path) -> EndpointDirectory:
        path = Path(path)
        problems: list[Problem] = []
        data = parse_yaml(path, problems)
        parsed = None if problems else validate(path, _EndpointsFile, data, problems)
        if parsed is None:
            raise ConfigError(problems)
        return cls({
            (region, pool): tuple(sorted(Endpoint(e.host, e.port, e.admin_port, e.name) for e in eps))
            for region, pools in parsed.regions.items()
            for pool, eps in pools.items()
        })

    def dump(self, path: str | Path) -> None:
        regions: dict[str, dict[str, list[dict[str, object]]]] = {}
        for (region, pool), eps in sorted(self.by_pool.items()):
            regions.setdefault(region, {})[pool] = [
                {"host": e.host, "port": e.port,
                 **({"admin_port": e.admin_port} if e.admin_port is not None else {}),
                 **({"name": e.name} if e.name is not None else {})}
                for e in eps]
        Path(path).write_text(yaml.safe_dump({"regions": regions}, sort_keys=True))


class _EndpointModel(Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    admin_port: int | None = Field(default=None, ge=1, le=65535)
    name: str | None = Field(default=None, min_length=1, max_length=200)


class _EndpointsFile(Strict):
    regions: dict[str, dict[str, list[_EndpointModel]]]
