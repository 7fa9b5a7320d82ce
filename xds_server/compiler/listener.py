"""The region's gateway listener: strip spoofable headers, verify the JWT, pick the tenant's routes."""

from __future__ import annotations

# Imported for their descriptors: ParseDict resolves each typed_config's type URL through them.
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2  # noqa: F401
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2  # noqa: F401
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import header_mutation_pb2  # noqa: F401
from google.protobuf import json_format, symbol_database
from google.protobuf.message import Message

from inference_images.runtime import gateway as contract  # the runtime owns the header names
from xds_server.compiler import failover, naming, ratelimits
from xds_server.config.model import AuthSettings, RateLimitSettings

HEALTH_PATHS = "^/v2/health/(live|ready)$"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ADS = {"ads": {}, "resource_api_version": "V3"}
_NO_ROUTE = {"response_flag_filter": {"flags": ["NR"]}}

# Response headers that never reach a client, each moved into the access log under its key.
_INTERNAL_RESPONSE_HEADERS = ((contract.REPLICA_HEADER, "replica"), ("x-envoy-upstream-service-time", "upstream_ms"))
LOG_METADATA = "fairshare.gateway"  # the dynamic-metadata namespace they are moved to

# What the access log records: enough to debug and bill, never a payload or a credential.
_ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "tenant": f"%REQ({contract.TENANT_HEADER.upper()})%",
    "method": "%REQ(:METHOD)%",
    # Not the path: a client may put anything in it, personal data included (an email as a model name or a
    # version, which Envoy cannot redact). The route is named by the config (the model, or model/version, or
    # why it was refused) and the operation is one of a fixed few, so nothing here is what a client wrote.
    "route": "%ROUTE_NAME%",
    "operation": "%CEL(request.url_path.endsWith('/infer') ? 'infer' : request.url_path.endsWith('/ready') ? 'ready'"
                 " : request.url_path.startsWith('/v2/models/') || request.url_path == '/v2' ? 'metadata' : 'other')%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "duration_ms": "%DURATION%",
    "replica": f"%DYNAMIC_METADATA({LOG_METADATA}:replica)%",
    "upstream_ms": f"%DYNAMIC_METADATA({LOG_METADATA}:upstream_ms)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
}


def gateway_listener(address: str, port: int, auth: AuthSettings, jwks: str, region: str,
                     ratelimit: RateLimitSettings | None = None, front: bool = False) -> listener_pb2.Listener:
    """A region's gateway listener; with `front`, a front tier's (xds_server/cells): the same edge (headers
    stripped, JWT verified, JSON errors, access log) with one route table that maps the verified tenant to
    its cell (compiler/front.py) instead of a scope per tenant, and no rate limits (the cells apply them)."""
    tenant = f"%REQ({contract.TENANT_HEADER})%"
    hcm = {
        "@type": _HCM,
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "use_remote_address": True,
        # Every response names its request (x-request-id): what a client quotes, and what finds the request's
        # access-log line, which holds the replica that answered (no longer on the response).
        "always_set_request_id_in_response": True,
        # Before routing and before any filter: a client can never choose its tenant, weight or rules.
        "early_header_mutation_extensions": [{
            "name": "strip-fairshare-headers",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                "mutations": [{"remove_on_match": {"key_matcher": {"prefix": contract.HEADER_PREFIX}}}],
            },
        }],
        # One scope (and one RouteConfiguration) per tenant, keyed by the tenant header that only the
        # JWT filter sets: a tenant edit re-sends that tenant's routes alone.
        **({"rds": {"route_config_name": naming.FRONT_ROUTES, "config_source": _ADS}} if front else {
            "scoped_routes": {
                "name": naming.SCOPED_ROUTES,
                "scope_key_builder": {"fragments": [
                    {"header_value_extractor": {"name": contract.TENANT_HEADER, "index": 0}},
                ]},
                "rds_config_source": _ADS,
                "scoped_rds": {"scoped_rds_config_source": _ADS},
            }}),
        "http_filters": [
            # First, so it sees each response last: the replica that answered (the runtime's
            # x-fairshare-replica, region/pool/replica) and Envoy's upstream time are internal topology and
            # timing, kept off the client's response and moved into the access log (`replica`, `upstream_ms`),
            # where operators read them beside the cluster; the runtime's own log names its replica too.
            {
                "name": "envoy.filters.http.header_to_metadata",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
                    "response_rules": [
                        {"header": header, "remove": True, "on_header_present": {
                            "metadata_namespace": LOG_METADATA, "key": key, "type": "STRING"}}
                        for header, key in _INTERNAL_RESPONSE_HEADERS],
                },
            },
            # The Open Inference Protocol's server health (tritonclient's is_server_live/is_server_ready),
            # answered here, before the credential: it says only that this gateway is up and not draining
            # (503 once it is, so a client or load balancer moves on). Behind the gateway there is no one
            # server; a model's readiness is `/v2/models/<m>/ready`, per tenant, through its routes.
            {
                "name": "envoy.filters.http.health_check",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                    "pass_through_mode": False,
                    "headers": [{"name": ":path", "string_match": {"safe_regex": {"regex": HEALTH_PATHS}}}],
                },
            },
            {
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {
                        "fairshare": {
                            "issuer": auth.issuer,
                            "audiences": [auth.audience],
                            "local_jwks": {"inline_string": jwks},
                            # Only the Authorization header: Envoy's default also takes `?access_token=`,
                            # where a bearer token ends up in proxies' logs, browser history and Referers.
                            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
                            # A token without `exp` (an IdP misconfigured) would be good forever.
                            "require_expiration": True,
                            # The front tier passes the token on: its cell verifies it again and trusts
                            # no header the front (or anyone) set.
                            "forward": front,
                            "claim_to_headers": [
                                {"header_name": contract.TENANT_HEADER, "claim_name": auth.tenant_claim},
                            ],
                            "clear_route_cache": True,
                            # Clients reuse a token for many calls: skip re-verifying the ES256 signature.
                            "jwt_cache_config": {"jwt_cache_size": 4096},
                        },
                    },
                    # A prefix rule never matches CONNECT (Envoy matches it only with connect_matcher): without
                    # the second rule a CONNECT went past the credential. It is refused anyway (no route serves
                    # it, see the local replies), but only once the token is verified like any request's.
                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "fairshare"}},
                              {"match": {"connect_matcher": {}}, "requires": {"provider_name": "fairshare"}}],
                },
            },
            # Per-tenant rate limits: local bucket, then the global service (after the tenant is known).
            *(ratelimits.http_filters(ratelimit) if ratelimit is not None and not front else []),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
        # Every error Envoy itself returns (401, 403, 404, 503) is JSON like the runtime's.
        "local_reply_config": {
            # No scope matched a verified token's tenant: it is unknown, or its data may not be served in
            # this region (a region's snapshot holds only the tenants allowed there).
            "mappers": [{
                # Not an error: the server metadata route's JSON (compiler/routes.py), the health answer.
                "filter": {"status_code_filter": {"comparison": {
                    "op": "EQ", "value": {"default_value": 200, "runtime_key": "fairshare.local_reply_ok"}}}},
                "body_format_override": {"text_format": "%LOCAL_REPLY_BODY%", "content_type": "application/json"},
            }, {
                # The rate-limit filters' own refusals (the local bucket, the global service) carry no
                # message, or Envoy's detail string; which limit and for how long is in the headers.
                "filter": {"status_code_filter": {"comparison": {
                    "op": "EQ", "value": {"default_value": 429, "runtime_key": "fairshare.local_reply_429"}}}},
                "body": {"inline_string": "rate limit exceeded: retry after the seconds in Retry-After "
                                          "(the RateLimit headers say which limit)"},
            }, {
                # The tenant's cluster's circuit breaker (compiler/clusters.py) is its concurrency quota: the
                # tenant has that many requests in flight (and pending). Like every limit of a tenant's own
                # (rate limits, the runtime's bounded queue) that is 429 with Retry-After, not Envoy's 503
                # "reset reason: overflow", which reads like an outage; one second is about a request's time.
                "filter": {"response_flag_filter": {"flags": ["UO"]}},
                "status_code": 429,
                "headers_to_add": [{"header": {"key": "retry-after", "value": "1"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                "body_format_override": _json(
                    f"tenant {tenant} has its concurrency quota of requests in flight: retry later "
                    "(after the seconds in Retry-After)"),
            }, {
                # Envoy refused the request before any route or filter (its codec: a malformed header, flag
                # DPE; its path normalisation: a `#` in the path, `path_normalization_failed`): the reply has
                # no body, so name the cause from the response code details, never echoing what the client
                # sent. No route of this gateway answers 400, so every 400 here is one of those.
                "filter": {"or_filter": {"filters": [
                    {"response_flag_filter": {"flags": ["DPE"]}},
                    {"status_code_filter": {"comparison": {
                        "op": "EQ", "value": {"default_value": 400, "runtime_key": "fairshare.local_reply_400"}}}},
                ]}},
                "body_format_override": _json("malformed request: %RESPONSE_CODE_DETAILS%"),
            }, {
                # No route serves CONNECT (every route matches a path); say so instead of the 403 below.
                "filter": {"and_filter": {"filters": [_NO_ROUTE, {"header_filter": {"header": {
                    "name": ":method", "string_match": {"exact": "CONNECT"}}}}]}},
                "status_code": 405,
                "body_format_override": _json("CONNECT is not served: this gateway serves the Open Inference "
                                              "Protocol's HTTP requests only"),
            }, {
                # A verified token whose tenant claim is missing or empty: the JWT filter set no tenant
                # header, so no scope matched. The token, not the region, is what is wrong.
                "filter": {"and_filter": {"filters": [_NO_ROUTE, {"header_filter": {"header": {
                    "name": contract.TENANT_HEADER, "string_match": {"safe_regex": {"regex": ".+"}},
                    "invert_match": True, "treat_missing_header_as_empty": True}}}]}},
                "status_code": 401,
                "body_format_override": _json(f"the token carries no tenant claim ('{auth.tenant_claim}')"),
            }, {
                "filter": _NO_ROUTE,
                "status_code": 403,
                "body_format_override": {
                    "json_format": {"error": f"tenant {tenant} is not served in region {region}",
                                    "code": "%RESPONSE_CODE%"},
                    "content_type": "application/json"},
            },
                # No replica could take it: say where none was, and that no other region may serve it.
                *failover.local_reply_mappers(region)],
            "body_format": {
                "json_format": {"error": "%LOCAL_REPLY_BODY%", "code": "%RESPONSE_CODE%"},
                "content_type": "application/json",
            },
        },
        "access_log": [{
            "name": "envoy.access_loggers.stdout",
            # Not the health answers (a load balancer's probe every few seconds); they carry no tenant.
            "filter": {"not_health_check_filter": {}},
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": _ACCESS_LOG_FORMAT},
            },
        }],
    }
    listener = {
        "name": naming.LISTENER,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                         "typed_config": hcm}]}],
        # Connections in flight finish on the old filter chain when a listener changes.
        "drain_type": "DEFAULT",
    }
    return deterministic(json_format.ParseDict(listener, listener_pb2.Listener()))


def deterministic(message: Message) -> Message:
    """Re-pack every Any inside `message` with deterministic serialisation.

    ParseDict packs typed_config with map entries (Struct fields in the access-log format) in hash
    order, which differs between processes; the listener's version would change on every control-plane
    restart and make Envoy drain and rebuild it.
    """
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values_desc = field.message_type.fields_by_name["value"]
            items = list(value.values()) if values_desc.message_type is not None else []
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            if item.DESCRIPTOR.full_name == "google.protobuf.Any":
                inner = symbol_database.Default().GetSymbol(item.TypeName())()
                item.Unpack(inner)
                item.Pack(deterministic(inner), deterministic=True)
            else:
                deterministic(item)
    return message


def _json(error: str) -> dict[str, object]:
    """A local reply's body in the runtime's error shape."""
    return {"json_format": {"error": error, "code": "%RESPONSE_CODE%"}, "content_type": "application/json"}
