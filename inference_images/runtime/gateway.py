"""The per-request facts the gateway (Envoy) attaches as headers, and the checks the runtime makes on them.

Envoy strips these headers from client requests and sets them from the route that served the request
(see docs: DESIGN.md, "Contracts between the parts"). The runtime trusts them only because nothing but
Envoy can reach it (NetworkPolicy in a cluster, loopback locally); it never authenticates a caller itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from inference_images.runtime.pii.rules import NO_RULES, PiiRules

# Triton's binary tensor data extension, as the server metadata names it: the runtime speaks it, and the
# gateway's own answer to `GET /v2` (xds_server/compiler/routes.py) says so for every replica behind it.
BINARY_EXTENSION = "binary_tensor_data"

# The header contract between the gateway and the runtime, defined once, here: the control plane's
# compiler imports these names when it writes each tenant's routes (xds_server/compiler/naming.py).
HEADER_PREFIX = "x-fairshare-"
TENANT_HEADER = "x-fairshare-tenant"
REGION_HEADER = "x-fairshare-region"
WEIGHT_HEADER = "x-fairshare-weight"
TIER_HEADER = "x-fairshare-tier"
MODEL_VERSION_HEADER = "x-fairshare-model-version"
PII_REDACT_HEADER = "x-fairshare-pii-redact"
PII_BLOCK_HEADER = "x-fairshare-pii-block"
# Entity types replaced by the tenant's keyed pseudonym (pii.pseudonyms) instead of a placeholder.
PII_PSEUDONYMISE_HEADER = "x-fairshare-pii-pseudonymise"
# The most requests of this tenant a replica may hold queued; past it the runtime answers 429 at once.
MAX_QUEUE_HEADER = "x-fairshare-max-queue"
# Set by the runtime on every inference response: what the request really cost, in tokens. The gateway's
# cost-based rate limit settles its up-front reservation against it.
COST_TOKENS_HEADER = "x-fairshare-cost-tokens"
# Set by Envoy on upstream requests when the route has a timeout: how long it will wait for the answer.
# A request still queued when that time has passed is dropped before it reaches the model.
EXPECTED_TIMEOUT_HEADER = "x-envoy-expected-rq-timeout-ms"
# A tenant's own model (docs/design/0003): set by the compiler on the tenant's own-model route (owner,
# format, base) and on each weighted cluster of its split (version above, artifact and digest). The
# owner header's presence marks the request as an own model, served from the model cache.
MODEL_OWNER_HEADER = "x-fairshare-model-owner"
MODEL_FORMAT_HEADER = "x-fairshare-model-format"
MODEL_BASE_HEADER = "x-fairshare-model-base"
MODEL_ARTIFACT_HEADER = "x-fairshare-model-artifact"
MODEL_SHA256_HEADER = "x-fairshare-model-sha256"
# The artifact's size in bytes, as the tenant's file declares it (or the config load measured it): the
# runtime refuses an artifact of another size before reading it, so a tier's size cap holds at load.
MODEL_BYTES_HEADER = "x-fairshare-model-bytes"
# Every version of the tenant's own model, comma-separated, on its route: what its metadata lists (the
# request's own version header is the one the split picked).
MODEL_VERSIONS_HEADER = "x-fairshare-model-versions"
# Set by the runtime on every response, so tests and operators can see which replica answered.
REPLICA_HEADER = "x-fairshare-replica"
# Set by the runtime on an inference response whose text it changed: counts by entity type
# ("email=1,phone=2"), never values, so a client knows the model saw placeholders.
PII_REDACTED_HEADER = "x-fairshare-pii-redacted"
# Likewise for the values replaced by the tenant's pseudonyms ("email=1").
PII_PSEUDONYMISED_HEADER = "x-fairshare-pii-pseudonymised"

# The tenant that requests without a tenant header run as, when --allow-anonymous permits them.
ANONYMOUS_TENANT = "anonymous"
DEFAULT_WEIGHT = 1.0
_MAX_TENANT_LEN = 128


class GatewayHeaderError(Exception):
    """A request whose gateway headers the runtime refuses; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class OwnModelHeaders:
    """The own-model headers as the gateway sent them; ``models.own.OwnModelRef.parse`` checks them."""

    owner: str
    format: str | None
    base: str | None
    artifact: str | None
    sha256: str | None
    bytes: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayContext:
    tenant: str
    weight: float
    region: str | None
    # The version the gateway's weighted cluster picked; None lets the runtime pick its default.
    model_version: str | None
    # The tenant's PII rules from the route that served the request (none when the headers are absent).
    pii: PiiRules = field(default=NO_RULES)
    # Set when the route is a tenant's own model (x-fairshare-model-owner present).
    own_model: OwnModelHeaders | None = None


def read_gateway_context(headers: Mapping[str, str], *, own_region: str, allow_anonymous: bool) -> GatewayContext:
    """Check and extract the gateway headers. Residency comes first: a request routed for another region
    is refused before anything else about it is looked at."""
    region = headers.get(REGION_HEADER)
    if region is not None and region != own_region:
        raise GatewayHeaderError(
            403,
            f"request was routed for region '{region}' but this replica serves region '{own_region}'; "
            "refusing to process data outside its region",
        )

    tenant = headers.get(TENANT_HEADER)
    if tenant is None:
        if not allow_anonymous:
            raise GatewayHeaderError(400, f"missing {TENANT_HEADER} header (requests must come through the gateway)")
        tenant = ANONYMOUS_TENANT
    elif not tenant or len(tenant) > _MAX_TENANT_LEN or not tenant.isprintable():
        raise GatewayHeaderError(400, f"{TENANT_HEADER} header must be 1-{_MAX_TENANT_LEN} printable characters")

    raw_weight = headers.get(WEIGHT_HEADER)
    weight = DEFAULT_WEIGHT
    if raw_weight is not None:
        try:
            weight = float(raw_weight)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise GatewayHeaderError(400, f"{WEIGHT_HEADER} header must be a positive number")

    # An empty version header is a gateway that had no version to set: same as none.
    version = headers.get(MODEL_VERSION_HEADER) or None
    pii = PiiRules.from_headers(headers.get(PII_REDACT_HEADER), headers.get(PII_BLOCK_HEADER),
                                headers.get(PII_PSEUDONYMISE_HEADER))
    owner = headers.get(MODEL_OWNER_HEADER)
    own = None
    if owner is not None:
        own = OwnModelHeaders(
            owner=owner,
            format=headers.get(MODEL_FORMAT_HEADER) or None,
            base=headers.get(MODEL_BASE_HEADER) or None,
            artifact=headers.get(MODEL_ARTIFACT_HEADER) or None,
            sha256=headers.get(MODEL_SHA256_HEADER) or None,
            bytes=headers.get(MODEL_BYTES_HEADER) or None,
        )
    return GatewayContext(tenant=tenant, weight=weight, region=region, model_version=version, pii=pii, own_model=own)
