"""Pre-publish validation by Envoy itself: a change Envoy would refuse never reaches the fleet."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from bench.synth import REPO_CONFIG
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory, routes
from xds_server.config import load_config
from xds_server.controlplane.service import ControlPlane
from xds_server.envoy.process import find_envoy
from xds_server.envoy.validate import EnvoyValidator, _bootstrap, changed_resources
from xds_server.snapshot import ROUTE, Resource, Snapshot
from xds_server.xds.store import SnapshotStore

JWKS = (
    '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "use": "sig",'
    ' "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
)
US = "us-east-1"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    return tmp_path / "config"


def compile_us(directory: Path, compiler: Compiler) -> Snapshot:
    return compiler.compile(CompileInputs(load_config(directory), EndpointDirectory(), JWKS)).snapshots[US]


def with_bad_regex(snapshot: Snapshot, route_name: str) -> Snapshot:
    rc = route_pb2.RouteConfiguration()
    snapshot.of_type(ROUTE)[route_name].packed.Unpack(rc)
    match = rc.virtual_hosts[0].routes[0].match
    match.ClearField("path_separated_prefix")
    match.safe_regex.regex = "["  # accepted by protobuf, refused by Envoy's RE2
    others = [r for by_name in snapshot.resources.values() for r in by_name.values()
              if not (r.type_url == ROUTE and r.name == route_name)]
    return Snapshot.build("bad", [*others, Resource.pack(route_name, rc)])


def test_the_example_config_validates_whole() -> None:
    snapshot = compile_us(REPO_CONFIG, Compiler())
    assert EnvoyValidator(find_envoy()).check(None, snapshot) is None


def test_a_route_envoy_refuses_is_reported_with_envoys_reason() -> None:
    snapshot = compile_us(REPO_CONFIG, Compiler())
    reason = EnvoyValidator(find_envoy()).check(snapshot, with_bad_regex(snapshot, "tenant/acme"))
    assert reason is not None and "missing ]" in reason and "/tmp/" not in reason


def test_only_what_changed_is_validated(cfg_dir: Path) -> None:
    compiler = Compiler()
    before = compile_us(cfg_dir, compiler)
    assert _bootstrap(before, changed_resources(before, before)) is None  # nothing changed: Envoy is not even started
    path = cfg_dir / "tenants" / "acme.yaml"
    path.write_text(path.read_text().replace("{v1: 90, v2: 10}", "{v1: 50, v2: 50}"))
    after = compile_us(cfg_dir, compiler)
    boot = _bootstrap(after, changed_resources(before, after))
    assert boot is not None
    [listener] = boot.static_resources.listeners
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    scopes = hcm.scoped_routes.scoped_route_configurations_list.scoped_route_configurations
    assert [s.route_configuration.name for s in scopes] == ["tenant/acme"]
    assert [c.name for c in boot.static_resources.clusters] == ["validate-xds"]  # no cluster changed


def test_control_plane_rejects_a_change_envoy_would_refuse(cfg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        store = SnapshotStore()
        cp = ControlPlane(cfg_dir, None, JWKS, store, validator=EnvoyValidator(find_envoy()))
        good = cp.reload()
        assert good.ok
        serving = store.get(US)

        real = routes.tenant_routes

        def broken(tenant: str, *args, **kwargs) -> route_pb2.RouteConfiguration:  # type: ignore[no-untyped-def]
            rc = real(tenant, *args, **kwargs)
            if tenant == "globex":  # a compiler bug that only shows on this tenant's next compile
                rc.virtual_hosts[0].routes[0].match.ClearField("path_separated_prefix")
                rc.virtual_hosts[0].routes[0].match.safe_regex.regex = "["
            return rc

        monkeypatch.setattr(routes, "tenant_routes", broken)
        path = cfg_dir / "tenants" / "globex.yaml"
        path.write_text(path.read_text().replace("{v1: 80, v2: 20}", "{v1: 70, v2: 30}"))
        outcome = cp.reload()
        assert not outcome.ok and outcome.version == good.version
        assert outcome.error is not None
        assert outcome.error.startswith(f"Envoy would reject the new config for region {US}: ")
        assert "missing ]" in outcome.error
        assert store.get(US) is serving  # nothing of the bad change was published

    asyncio.run(scenario())


def test_a_config_without_tenants_validates(tmp_path: Path) -> None:
    from bench.synth import write_config

    snapshot = compile_us(write_config(tmp_path / "config", 0), Compiler())
    assert EnvoyValidator(find_envoy()).check(None, snapshot) is None
