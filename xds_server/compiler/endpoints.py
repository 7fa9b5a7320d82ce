"""Where each region's pools run. Locally the launcher writes it; in a cluster it comes from the
pool Services. Kept apart from the tenant spec: endpoints change with scaling, tenants with contracts."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class EndpointDirectory:
    by_pool: dict[tuple[str, str], tuple[Endpoint, ...]] = field(default_factory=dict)

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
            (region, pool): tuple(sorted(Endpoint(e.host, e.port) for e in eps))
            for region, pools in parsed.regions.items()
            for pool, eps in pools.items()
        })

    def dump(self, path: str | Path) -> None:
        regions: dict[str, dict[str, list[dict[str, object]]]] = {}
        for (region, pool), eps in sorted(self.by_pool.items()):
            regions.setdefault(region, {})[pool] = [{"host": e.host, "port": e.port} for e in eps]
        Path(path).write_text(yaml.safe_dump({"regions": regions}, sort_keys=True))


class _EndpointModel(Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class _EndpointsFile(Strict):
    regions: dict[str, dict[str, list[_EndpointModel]]]
