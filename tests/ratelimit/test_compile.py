"""Rate limits compiled from the tenant spec: the service's limit table, each route's descriptors and
local bucket, the listener's filters; Envoy itself accepts them; a quota edit republishes the table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from tests.ratelimit.conftest import REGION, TENANTS, write_config
from xds_server.compiler import CompileInputs, Compiler, EndpointDirectory, naming
from xds_server.config import ConfigError, load_config
from xds_server.config.model import FailureMode
from xds_server.controlplane.service import ControlPlane
from xds_server.envoy.process import find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.ratelimit.limits import LimitTable
from xds_server.snapshot import LISTENER, ROUTE, Snapshot
from xds_server.xds.store import SnapshotStore

JWKS = (
    '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "use": "sig",'
    ' "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
)


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path, 18080)
    (cfg / "tenants" / "internal.yaml").write_text(yaml.safe_dump({
        "id": "internal", "tier": "open", "regions": {"home": REGION, "allowed": [REGION]},
        "models": {"classifier": {"split": {"v1": 100}}}, "rate_limit": {"exempt": True}}))
    return cfg


def compile_dir(cfg: Path, compiler: Compiler | None = None) -> tuple[Snapshot, LimitTable]:
    compiled = (compiler or Compiler()).compile(CompileInputs(load_config(cfg), EndpointDirectory(), JWKS))
    return compiled.snapshots[REGION], compiled.ratelimits


def routes_of(snapshot: Snapshot, tenant: str) -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration()
    snapshot.of_type(ROUTE)[naming.tenant_routes(tenant)].packed.Unpack(rc)
    return rc


def test_limit_table_comes_from_effective_quotas_tier_and_tenant_settings(cfg_dir: Path) -> None:
    _, table = compile_dir(cfg_dir)
    assert set(table.tenants) == set(TENANTS)  # the exempt tenant has no limits
    flood = table.tenants["flood"]
    assert (flood.requests.rate, flood.requests.period_s, flood.requests.burst) == (10, 1, 2)  # burst 20%
    assert (flood.tokens.rate, flood.tokens.period_s) == (1_000_000, 60)
    assert table.tenants["closedco"].failure_mode is FailureMode.CLOSED
    assert table.tenants["openco"].failure_mode is FailureMode.OPEN
    assert table.tenants["shadowy"].shadow and not flood.shadow
    # A burst holds at least two reservations, however low the token quota (one to admit, one of slack).
    assert table.tenants["costly"].tokens.burst == 120
    # And at least two requests: a burst of one leaves GCRA no slack, and a low limit lost a third of its rate.
    assert table.tenants["low1"].requests.burst == 2


def test_each_tenant_sends_its_descriptors_to_its_tiers_filter(cfg_dir: Path) -> None:
    snapshot, _ = compile_dir(cfg_dir)
    for tenant, mode in (("openco", "open"), ("closedco", "closed")):
        vhost = routes_of(snapshot, tenant).virtual_hosts[0]
        # Once per virtual host; each model route names its model in its metadata.
        model_routes = [r for r in vhost.routes if r.name.startswith("classifier")]
        assert len(model_routes) == 2  # the split and the pinned version
        for route in model_routes:
            assert not route.typed_per_filter_config
            assert dict(route.metadata.filter_metadata["fairshare"]) == {"model": "classifier"}
        refusals = [r for r in vhost.routes if r.HasField("direct_response")]
        assert refusals and not any(r.HasField("metadata") for r in refusals)  # refusals spend nothing
        filter_name = f"envoy.filters.http.ratelimit.fail_{mode}"
        assert set(vhost.typed_per_filter_config) == {filter_name, "envoy.filters.http.local_ratelimit"}
        per_route = rate_limit_pb2.RateLimitPerRoute()
        vhost.typed_per_filter_config[filter_name].Unpack(per_route)

        def entry(action) -> tuple[str, str]:  # type: ignore[no-untyped-def]
            if action.HasField("metadata"):
                key = action.metadata.metadata_key
                return (action.metadata.descriptor_key, f"route:{key.key}.{key.path[0].key}")
            return (action.generic_key.descriptor_key, action.generic_key.descriptor_value)

        entries = [[entry(a) for a in rl.actions] for rl in per_route.rate_limits]
        base = [("region", REGION), ("tenant", tenant), ("tier", mode), ("model", "route:fairshare.model")]
        assert entries == [[*base, ("limit", "requests")], [*base, ("limit", "tokens")],
                           [*base, ("limit", "tokens"), ("reserved", "16")]]
        reserve, settle = per_route.rate_limits[1], per_route.rate_limits[2]
        assert reserve.hits_addend.number.value == 16 and not reserve.apply_on_stream_done
        assert settle.hits_addend.format == "%RESP(x-fairshare-cost-tokens)%" and settle.apply_on_stream_done
        bucket = local_rate_limit_pb2.LocalRateLimit()
        vhost.typed_per_filter_config["envoy.filters.http.local_ratelimit"].Unpack(bucket)
        # A flood guard at twice the tenant's 50/s, never a second limiter at its rate: 5 tokens every 50 ms
        # (Envoy's shortest interval), room for twice the global burst (10) and one refill at once.
        assert (bucket.token_bucket.tokens_per_fill.value, bucket.token_bucket.fill_interval.ToMilliseconds(),
                bucket.token_bucket.max_tokens) == (5, 50, 20 + 5)
        assert bucket.filter_enforced.default_value.numerator == 100
    shadow = local_rate_limit_pb2.LocalRateLimit()
    routes_of(snapshot, "shadowy").virtual_hosts[0].typed_per_filter_config[
        "envoy.filters.http.local_ratelimit"].Unpack(shadow)
    assert shadow.filter_enforced.default_value.numerator == 0  # counted, never enforced
    exempt = routes_of(snapshot, "internal").virtual_hosts[0]
    assert not exempt.typed_per_filter_config and not any(r.typed_per_filter_config for r in exempt.routes)


def http_filter_names(snapshot: Snapshot) -> list[str]:
    listener = listener_pb2.Listener()
    snapshot.of_type(LISTENER)[naming.LISTENER].packed.Unpack(listener)
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return [f.name for f in hcm.http_filters]


def test_listener_checks_local_then_global_once_per_failure_mode(cfg_dir: Path) -> None:
    snapshot, _ = compile_dir(cfg_dir)
    # The response-header strip first (it sees every response last), then health (answered before any
    # credential), then who, then how much.
    assert http_filter_names(snapshot) == [
        "envoy.filters.http.header_to_metadata", "envoy.filters.http.health_check", "envoy.filters.http.jwt_authn",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.ratelimit.fail_open", "envoy.filters.http.ratelimit.fail_closed",
        "envoy.filters.http.router"]
    assert naming.RATELIMIT_CLUSTER in snapshot.of_type("type.googleapis.com/envoy.config.cluster.v3.Cluster")

    platform = cfg_dir / "platform.yaml"
    platform.write_text(yaml.safe_dump({"ratelimit": {"enabled": False}}))
    off, table = compile_dir(cfg_dir)
    assert http_filter_names(off) == ["envoy.filters.http.header_to_metadata", "envoy.filters.http.health_check",
                                      "envoy.filters.http.jwt_authn", "envoy.filters.http.router"]
    assert not table.tenants and not routes_of(off, "flood").virtual_hosts[0].typed_per_filter_config


def test_envoy_accepts_the_rate_limits_and_an_edit_to_them(cfg_dir: Path) -> None:
    validator = EnvoyValidator(find_envoy())
    compiler = Compiler(ratelimit_address=("127.0.0.1", 19999))
    first, _ = compile_dir(cfg_dir, compiler)
    assert validator.check(None, first) is None
    edit_quota(cfg_dir, "closedco", 7)
    second, table = compile_dir(cfg_dir, compiler)
    assert table.tenants["closedco"].requests.rate == 7
    assert validator.check(first, second) is None


def edit_quota(cfg_dir: Path, tenant: str, rps: float) -> None:
    path = cfg_dir / "tenants" / f"{tenant}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["quotas"]["requests_per_second"] = rps
    path.write_text(yaml.safe_dump(spec))


def test_a_quota_edit_publishes_a_new_limit_table_with_its_snapshot(cfg_dir: Path) -> None:
    published: list[LimitTable] = []
    cp = ControlPlane(cfg_dir, None, JWKS, SnapshotStore(), limits_sink=published.append)
    assert cp.reload().ok
    edit_quota(cfg_dir, "flood", 25)
    assert cp.reload().ok
    assert [t.tenants["flood"].requests.rate for t in published] == [10, 25]
    assert published[0].version != published[1].version
    # A rejected change publishes nothing: the last good limits keep deciding.
    (cfg_dir / "tenants" / "flood.yaml").write_text("id: flood\ntier: nonexistent\n")
    assert not cp.reload().ok
    assert len(published) == 2


def test_bad_rate_limit_settings_are_reported_with_file_and_field(cfg_dir: Path) -> None:
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump({"ratelimit": {"enabled": True, "backend": "redis"}}))
    tiers = yaml.safe_load((cfg_dir / "tiers.yaml").read_text())
    tiers["tiers"]["closed"]["rate_limit"]["failure_mode"] = "sometimes"
    (cfg_dir / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    with pytest.raises(ConfigError) as err:
        load_config(cfg_dir)
    text = err.value.render()
    assert "platform.yaml" in text and "needs ratelimit.redis_url" in text
    assert "tiers.yaml" in text and "failure_mode" in text and "'open' or 'closed'" in text


def test_a_rate_limit_check_is_never_cut_before_its_timeout() -> None:
    """Envoy's per-try timeout for the check is the retry back-off's max interval: shorter than the check's
    timeout, a slow check was cut and either counted twice or let through uncounted by a fail-open tier."""
    from xds_server.compiler.ratelimits import http_filters
    from xds_server.config.model import RateLimitSettings

    settings = RateLimitSettings(enabled=True, timeout_ms=200)
    checks = [f["typed_config"] for f in http_filters(settings) if "rate_limit_service" in f["typed_config"]]
    assert len(checks) == len(FailureMode)
    for check in checks:
        service = check["rate_limit_service"]["grpc_service"]
        assert service["retry_policy"]["retry_back_off"]["max_interval"] == service["timeout"] == check["timeout"]
