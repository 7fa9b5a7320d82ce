"""Rate limits compiled from the tenant spec, never written by hand: the service's limit table, each
tenant route's descriptors (global check) and token bucket (local check), and the listener's filters.

The listener has two global rate-limit filters, one failing open and one failing closed (Envoy's
failure_mode_deny is per filter, not per route); each tenant's virtual host gives its descriptors to the
filter of its tier's failure mode (per-filter config), so the tier's rule holds even when the service
itself cannot be reached. Descriptors live in the filter's per-filter config, not the route's legacy
`rate_limits`: only there does Envoy honour `hits_addend` (checked against Envoy 1.40). They are set once
per virtual host, not per route, and read the model from the matched route's metadata: per route, they
more than doubled a 10,000-tenant snapshot.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Collection
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 (descriptor for ParseDict)
from envoy.type.metadata.v3 import metadata_pb2
from google.protobuf import any_pb2, json_format, wrappers_pb2

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import naming
from xds_server.config.model import FailureMode, PlatformConfig, RateLimitSettings, ResolvedTenant
from xds_server.ratelimit import limits as lim

LOCAL_FILTER = "envoy.filters.http.local_ratelimit"
GLOBAL_FILTER = {mode: f"envoy.filters.http.ratelimit.fail_{mode.value}" for mode in FailureMode}
_TENANT_PERIOD_S = {lim.Kind.REQUESTS: 1.0, lim.Kind.TOKENS: 60.0}
# The smallest GCRA burst, in units of one hit. A burst of one leaves no slack: a hit is admitted only at
# or after its theoretical arrival time, so every request that reaches the service a little early is
# refused and the time until the next one is lost for good; a saturating tenant at 1 or 5 requests/s
# was admitted 0.65-0.8x its limit. Two units carry the phase error between arrivals and the counter,
# so a saturating tenant is admitted exactly its rate (docs/ratelimit.md).
MIN_BURST = 2.0
# The local bucket is a flood guard, not a limiter: this many times the tenant's rate and burst per
# gateway. At the tenant's own rate it was a second limiter in series with the global one, out of phase
# with it, and a request it passed that the global check refused had spent its token: a saturating
# tenant at 1 or 5 requests/s got about two thirds of its limit. With headroom it never binds for a
# tenant the global check holds to its limit, and still caps what a flood sends to the service.
LOCAL_HEADROOM = 2.0


def enabled(cfg: PlatformConfig) -> bool:
    return cfg.platform.ratelimit.enabled


def failure_mode(cfg: PlatformConfig, tenant: ResolvedTenant) -> FailureMode:
    """The one accessor for a tenant's failure mode (its tier's)."""
    return cfg.tiers[tenant.spec.tier].rate_limit.failure_mode


def limited(cfg: PlatformConfig, tenant: ResolvedTenant) -> bool:
    return enabled(cfg) and not tenant.spec.rate_limit.exempt


def tenant_limits(cfg: PlatformConfig, tenant: ResolvedTenant) -> lim.TenantLimits:
    settings = cfg.platform.ratelimit
    return _tenant_limits(tenant.id, tenant.spec.tier, failure_mode(cfg, tenant), tenant.spec.rate_limit.shadow,
                          tenant.quotas.requests_per_second, tenant.quotas.tokens_per_minute,
                          settings.burst_fraction, settings.token_estimate)


@functools.lru_cache(maxsize=1 << 18)
def _tenant_limits(tenant: str, tier: str, mode: FailureMode, shadow: bool, rps: float, tpm: int,
                   burst_fraction: float, token_estimate: int) -> lim.TenantLimits:
    """Memoised on plain values: a compile of 10,000 tenants rebuilds only the limits that changed."""
    return lim.TenantLimits(
        tenant=tenant, tier=tier, failure_mode=mode, shadow=shadow,
        requests=lim.Limit(rps, _TENANT_PERIOD_S[lim.Kind.REQUESTS], max(MIN_BURST, rps * burst_fraction)),
        # At least two reservations: one to admit a request at all, one of slack (MIN_BURST).
        tokens=lim.Limit(float(tpm), _TENANT_PERIOD_S[lim.Kind.TOKENS],
                         max(MIN_BURST * token_estimate, tpm * burst_fraction)),
    )


def limit_table(cfg: PlatformConfig, previous: tuple[object, lim.LimitTable] | None = None,
                changed: Collection[str] | None = None, gone: Collection[str] | None = None) -> lim.LimitTable:
    """Every limited tenant's limits. With the `previous` (inputs key, table) of the last compile and the
    tenants `changed` since (`table_inputs`), only those are computed again: one tenant's edit among
    100,000 costs its own limits, not a loop over every tenant. `gone`: the tenants removed since, where
    the caller knows (else they are found by comparing the table with the config)."""
    settings = cfg.platform.ratelimit
    modes = {name: tier.rate_limit.failure_mode for name, tier in cfg.tiers.items()}

    def of(tid: str) -> lim.TenantLimits | None:
        tenant = cfg.tenants.get(tid)
        if tenant is None or tenant.spec.rate_limit.exempt:
            return None
        spec, quotas = tenant.spec, tenant.quotas
        return _tenant_limits(tid, spec.tier, modes[spec.tier], spec.rate_limit.shadow,
                              quotas.requests_per_second, quotas.tokens_per_minute,
                              settings.burst_fraction, settings.token_estimate)

    if previous is not None and changed is not None and previous[0] == table_inputs(cfg):
        table = previous[1]
        if gone is None:
            gone = table.tenants.keys() - cfg.tenants.keys()
        return table.updated({tid: of(tid) for tid in (*changed, *gone)})
    return lim.LimitTable.build({tid: limits for tid in cfg.tenants if (limits := of(tid)) is not None})


def table_inputs(cfg: PlatformConfig) -> object:
    """What every tenant's limits read besides the tenant: its tier's failure mode and the burst settings."""
    settings = cfg.platform.ratelimit
    return (settings.burst_fraction, settings.token_estimate,
            tuple(sorted((name, tier.rate_limit.failure_mode) for name, tier in cfg.tiers.items())))


def shared_inputs(cfg: PlatformConfig) -> dict[str, Any]:
    """What tenant routes read outside the tenant's own spec (for the compiler's memo key)."""
    return {
        "settings": cfg.platform.ratelimit.model_dump(mode="json"),
        "tiers": {name: tier.rate_limit.model_dump(mode="json") for name, tier in cfg.tiers.items()},
    }


# -- routes ----------------------------------------------------------------------------------------------

# Where a model route names its model for the descriptors (route metadata, filter_metadata namespace).
METADATA_NAMESPACE = "fairshare"
METADATA_MODEL = "model"


@functools.lru_cache(maxsize=4096)
def model_metadata(model: str) -> base_pb2.Metadata:
    """A model route's metadata: the model its requests count against."""
    metadata = base_pb2.Metadata()
    metadata.filter_metadata[METADATA_NAMESPACE].update({METADATA_MODEL: model})
    return metadata


def global_limits(cfg: PlatformConfig, tenant: ResolvedTenant, region: str) -> dict[str, any_pb2.Any]:
    """The tenant's descriptors (virtual host), for the global filter of its failure mode."""
    if not limited(cfg, tenant):
        return {}
    # From a template shared by every tenant of the tier (10,000 tenants compile in a fraction of the time
    # building each from scratch takes): only the tenant entry differs.
    per_route = rate_limit_pb2.RateLimitPerRoute.FromString(
        _template(region, tenant.spec.tier, cfg.platform.ratelimit.token_estimate))
    for rate_limit in per_route.rate_limits:
        rate_limit.actions[_TENANT_ACTION].generic_key.descriptor_value = tenant.id
    packed = any_pb2.Any(type_url=_PER_ROUTE_TYPE, value=per_route.SerializeToString(deterministic=True))
    return {GLOBAL_FILTER[failure_mode(cfg, tenant)]: packed}


_TENANT_ACTION = 1  # index of the tenant entry in each descriptor (see route_rate_limits)
_PER_ROUTE_TYPE = "type.googleapis.com/" + rate_limit_pb2.RateLimitPerRoute.DESCRIPTOR.full_name


@functools.lru_cache(maxsize=4096)
def _template(region: str, tier: str, estimate: int) -> bytes:
    per_route = rate_limit_pb2.RateLimitPerRoute(rate_limits=route_rate_limits(region, "", tier, estimate))
    return per_route.SerializeToString(deterministic=True)


def route_rate_limits(region: str, tenant: str, tier: str, estimate: int) -> list[rc.RateLimit]:
    """Three descriptors: requests (1 hit), a token reservation at admission (the estimate), and its
    settlement when the response is done (the real cost from the runtime's header, with the reservation
    named so the service refunds it). The model entry comes from the matched route's metadata; a route
    without it (a refusal: 403, 404) sends no descriptor, so refusals spend nothing."""
    base = [(lim.REGION, region), (lim.TENANT, tenant), (lim.TIER, tier)]

    def actions(*extra: tuple[str, str]) -> list[rc.RateLimit.Action]:
        return [*(_action(k, v) for k, v in base), _MODEL_ACTION, *(_action(k, v) for k, v in extra)]

    return [
        rc.RateLimit(actions=actions((lim.LIMIT, lim.Kind.REQUESTS))),
        rc.RateLimit(actions=actions((lim.LIMIT, lim.Kind.TOKENS)),
                     hits_addend=rc.RateLimit.HitsAddend(number=wrappers_pb2.UInt64Value(value=estimate))),
        rc.RateLimit(actions=actions((lim.LIMIT, lim.Kind.TOKENS), (lim.RESERVED, str(estimate))),
                     hits_addend=rc.RateLimit.HitsAddend(format=f"%RESP({contract.COST_TOKENS_HEADER})%"),
                     apply_on_stream_done=True),
    ]


_MODEL_ACTION = rc.RateLimit.Action(metadata=rc.RateLimit.Action.MetaData(
    descriptor_key=lim.MODEL,
    metadata_key=metadata_pb2.MetadataKey(key=METADATA_NAMESPACE,
                                          path=[metadata_pb2.MetadataKey.PathSegment(key=METADATA_MODEL)]),
    source=rc.RateLimit.Action.MetaData.ROUTE_ENTRY,
))


@functools.lru_cache(maxsize=4096)
def _action(key: str, value: str) -> rc.RateLimit.Action:
    """Memoised: the same region, tier, model and limit entries recur across thousands of tenants."""
    return rc.RateLimit.Action(generic_key=rc.RateLimit.Action.GenericKey(descriptor_key=key, descriptor_value=value))


def local_limit(cfg: PlatformConfig, tenant: ResolvedTenant) -> dict[str, any_pb2.Any]:
    """The tenant's virtual host's local token bucket (typed_per_filter_config): a per-gateway flood
    guard at LOCAL_HEADROOM times the tenant's rate and burst, so a flood never reaches the global
    service at full rate; the global check alone decides the tenant's limit."""
    if not limited(cfg, tenant):
        return {}
    packed = _local_bucket(tenant.quotas.requests_per_second, cfg.platform.ratelimit.burst_fraction,
                           tenant.spec.rate_limit.shadow)
    return {LOCAL_FILTER: packed}


@functools.lru_cache(maxsize=1024)
def _local_bucket(rps: float, burst_fraction: float, shadow: bool) -> any_pb2.Any:
    """Memoised: few distinct quotas among many tenants (the map assignment copies it into each route)."""
    rate = rps * LOCAL_HEADROOM
    fill_s = max(0.05, 1.0 / rate)  # Envoy's shortest fill interval is 50 ms
    per_fill = max(1, math.ceil(rate * fill_s))
    # Room for the global burst from every gateway at once, and a refill's worth on top.
    burst = math.ceil(LOCAL_HEADROOM * max(MIN_BURST, rps * burst_fraction)) + per_fill
    percent = {"numerator": 100, "denominator": "HUNDRED"}
    enforced = {"numerator": 0 if shadow else 100, "denominator": "HUNDRED"}
    config = {
        "stat_prefix": "tenant_local_rate_limit",
        "token_bucket": {"max_tokens": burst, "tokens_per_fill": per_fill,
                         "fill_interval": f"{fill_s:.3f}s"},
        "filter_enabled": {"default_value": percent, "runtime_key": "fairshare.local_rate_limit.enabled"},
        "filter_enforced": {"default_value": enforced, "runtime_key": "fairshare.local_rate_limit.enforced"},
        "response_headers_to_add": [
            {"header": {"key": "retry-after", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header": {"key": "ratelimit-policy", "value": f'"local";q={math.floor(rate)};w=1'},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        ],
    }
    message = json_format.ParseDict(config, local_rate_limit_pb2.LocalRateLimit())
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


# -- listener and cluster ----------------------------------------------------------------------------

def http_filters(settings: RateLimitSettings) -> list[dict[str, Any]]:
    """Local first (per-vhost buckets; a pass-through where a route has none), then the global check
    once per failure mode. Goes between jwt_authn and the router."""
    if not settings.enabled:
        return []
    timeout = f"{settings.timeout_ms / 1000:.3f}s"
    out: list[dict[str, Any]] = [{
        "name": LOCAL_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "tenant_local_rate_limit",
        },
    }]
    for mode, name in GLOBAL_FILTER.items():
        rl: dict[str, Any] = {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": lim.DOMAIN,
            "timeout": timeout,
            "failure_mode_deny": mode is FailureMode.CLOSED,
            "stat_prefix": f"fail_{mode.value}",
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": naming.RATELIMIT_CLUSTER}, "timeout": timeout,
                                 "retry_policy": _rls_retry(timeout)},
                "transport_api_version": "V3",
            },
        }
        if mode is FailureMode.CLOSED:
            # The service cannot decide: refuse with 503 (not 429: the tenant is not over its limit).
            rl["status_on_error"] = {"code": "ServiceUnavailable"}
        out.append({"name": name, "typed_config": rl})
    return out


# A check whose connection died with its service replica (a control plane lost) is asked again, on a new
# connection to a live one, inside the same timeout: otherwise a closed-failure tier's request in flight at
# that moment would get 503. Retrying may count that one request twice; never a request fewer.
# Envoy turns this core retry policy into a route one whose per-try timeout is the back-off's max_interval
# (Http::Utility::convertCoreToRouteRetryPolicy): a max of 25 ms cut every check slower than that, retried
# it (counting it twice) or let it fail by its tier's mode (fail-open: served uncounted), so a burst got
# past its limit. The max interval is therefore the check's whole timeout: an attempt is never cut early,
# and a reset or refused connection is still retried at once, inside the same timeout.
def _rls_retry(timeout: str) -> dict[str, Any]:
    return {
        "retry_on": "connect-failure,refused-stream,reset,unavailable",
        "num_retries": 2,
        "retry_back_off": {"base_interval": "0.005s", "max_interval": timeout},
    }


def service_cluster(settings: RateLimitSettings,
                    tls: base_pb2.TransportSocket | None = None) -> cluster_pb2.Cluster:
    """Where Envoy finds the rate-limit service (gRPC, so HTTP/2); `tls`: mutual TLS to it
    (compiler.upstream_tls.control_plane_socket), or None for plaintext."""
    try:
        ipaddress.ip_address(settings.host)
        discovery = "STATIC"
    except ValueError:
        discovery = "STRICT_DNS"
    cluster = {
        "name": naming.RATELIMIT_CLUSTER,
        "type": discovery,
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": naming.RATELIMIT_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": settings.host, "port_value": settings.port}}}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
    }
    parsed = json_format.ParseDict(cluster, cluster_pb2.Cluster())
    if tls is not None:
        parsed.transport_socket.CopyFrom(tls)
    return parsed
