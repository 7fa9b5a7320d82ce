"""Typed config model. Unknown fields are errors everywhere (extra="forbid"), so a typo never passes silently."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

# The runtime finds the entities, so it owns their names (as it owns the gateway header names).
from inference_images.runtime.pii.entities import Entity as PiiEntity
from xds_server.config.urls import has_userinfo, redis_url_problem, without_userinfo
from xds_server.layered import as_dict
from xds_server.listing import capped

# What each pattern below means, in words: what the loader says of a value that does not match one
# (xds_server/config/messages.py), instead of the regular expression.
PATTERN_MEANINGS: dict[str, str] = {}


def _pattern(pattern: str, meaning: str) -> str:
    PATTERN_MEANINGS[pattern] = meaning
    return pattern


NAME_PATTERN = r"[a-z][a-z0-9-]{0,40}[a-z0-9]"
Name = Annotated[str, Field(pattern=_pattern(
    rf"^{NAME_PATTERN}$",
    "must be 2 to 42 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"))]
_NAME = re.compile(NAME_PATTERN)


def is_name(value: str) -> bool:
    """Whether `value` is a name as `Name` allows it: what a name given on a command line (a tenant to
    offboard, or to mint a token for) must be before any file is looked up by it."""
    return _NAME.fullmatch(value) is not None


VersionName = Annotated[str, Field(pattern=_pattern(
    r"^[a-z0-9][a-z0-9.-]{0,20}$",
    "must be 1 to 21 lower-case letters, digits, '.' and '-', starting with a letter or digit (v1, 2, 1.0)"))]
BucketName = Annotated[str, Field(pattern=_pattern(
    r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "must be an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a "
    "letter or digit"))]
Sha256 = Annotated[str, Field(pattern=_pattern(
    r"^[0-9a-f]{64}$", "must be 64 lower-case hex digits (the artifact's sha256, as sha256sum prints it)"))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def example(value: Any) -> ConfigDict:
    """A model's config with an example of it, which the loader shows where a file has something else in
    its place (`models.embedder: expected a mapping such as {split: {v1: 100}}`). Fields carry theirs as
    Field(examples=[...])."""
    return ConfigDict(json_schema_extra={"examples": [value]})



class Quotas(Strict):
    """Per-tenant limits. Absent fields fall back to the tier's defaults."""

    model_config = example({"concurrency": 8})

    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    requests_per_second: float | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    gpus: int | None = Field(default=None, ge=0)


class EffectiveQuotas(Strict):
    concurrency: int = Field(ge=1, le=100_000)
    requests_per_second: float = Field(gt=0)
    tokens_per_minute: int = Field(ge=1)
    gpus: int = Field(ge=0)


class FailureMode(StrEnum):
    """What the gateway does with a tier's requests when the global rate-limit check cannot answer."""

    OPEN = "open"  # serve them (availability first; the local limit still holds)
    CLOSED = "closed"  # refuse them with 503 (the limit is never exceeded)


class TierRateLimit(Strict):
    failure_mode: FailureMode = FailureMode.OPEN


class ModelFormat(StrEnum):
    """How a tenant's own model (or an `onnx` catalog model) is run by the runtime (docs/design/0003)."""

    ONNX = "onnx"  # any ONNX graph: tensors in, tensors out
    HEAD = "head"  # a small ONNX graph over a catalog model's output (text -> base -> head)


class TierOwnModels(Strict):
    """What a tier's tenants may bring of their own models (policy/models enforces it). Apart from
    `limits`: these are not tenant quotas a tenant file can override, only caps. The default allows none."""

    max_per_tenant: int = Field(default=0, ge=0, le=100_000)
    max_bytes_per_model: int = Field(default=0, ge=0)
    formats: list[ModelFormat] = Field(default_factory=list, examples=[["onnx", "head"]])


class Tier(Strict):
    weight: float = Field(gt=0, le=1000)
    quotas: EffectiveQuotas
    # The most a tenant of this tier may have; the quota policy clamps overrides to it.
    limits: Quotas = Quotas()
    rate_limit: TierRateLimit = TierRateLimit()
    own_models: TierOwnModels = TierOwnModels()


class Pool(Strict):
    model_config = example({"name": "cpu-general", "replicas": 2})

    name: Name
    accelerator: str = "cpu"
    replicas: int = Field(default=2, ge=1, le=1000)
    gpus_per_replica: int = Field(default=0, ge=0, le=16)
    # Each replica's model-cache budget for tenants' own models (the runtime's --cache-budget-mb);
    # None: the runtime's default.
    model_cache_mb: int | None = Field(default=None, ge=1, le=4_000_000)


# A cell name that is a shared cell's (c0, c1, ...) or the front tier's cannot be a dedicated cell's.
_SHARED_CELL = re.compile(r"^c[0-9]+$")


def is_shared_cell(name: str) -> bool:
    """Whether `name` is a shared cell's (c0, c1, ...): its index is its number."""
    return _SHARED_CELL.match(name) is not None


class RegionCells(Strict):
    """How a region's tenants are split across gateway fleets (xds_server/cells, docs/design/0005): `shared`
    cells c0..c{N-1} take every tenant not pinned elsewhere; `dedicated` cells only tenants pinned to them
    (a tenant's `cell`). One shared cell and no dedicated one is a region without cells: no front tier."""

    model_config = example({"shared": 2})

    shared: int = Field(default=1, ge=1, le=1000)
    dedicated: list[Name] = Field(default_factory=list, examples=[["big-tenant"]])

    @field_validator("dedicated")
    @classmethod
    def _dedicated_names(cls, names: list[str]) -> list[str]:
        _reject_duplicates(names, "dedicated cell")
        for name in names:
            if is_shared_cell(name) or name == "front":
                raise ValueError(f"dedicated cell {name!r}: c<number> names are the shared cells' and 'front' is "
                                 "the front tier's; choose another name")
        return names


class Region(Strict):
    id: Name
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    pools: list[Pool] = Field(min_length=1, examples=[[{"name": "cpu-general", "replicas": 2}]])
    cells: RegionCells = RegionCells()
    # The region's model bucket (terraform/region names its model_store after it): tenants' S3
    # artifacts must sit in the bucket of a region they allow (policy/models).
    model_bucket: BucketName | None = None

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[Pool]) -> list[Pool]:
        _reject_duplicates([p.name for p in pools], "pool")
        return pools

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


def check_artifact(artifact: str) -> str:
    """An artifact is `s3://bucket/key` or a local path (the loader makes a relative one absolute)."""
    if artifact.startswith("s3://"):
        bucket, _, key = artifact.removeprefix("s3://").partition("/")
        if not bucket or not key or key.endswith("/"):
            raise ValueError(f"an S3 artifact must be s3://BUCKET/KEY naming one object, got {artifact!r}")
    elif "://" in artifact:
        raise ValueError(f"an artifact is an s3:// URI or a local path, got {artifact!r}")
    if any(c in artifact for c in "\r\n\0"):
        raise ValueError("an artifact may not contain control characters")
    return artifact


def is_s3(artifact: str) -> bool:
    return artifact.startswith("s3://")


class ModelVersion(Strict):
    model_config = example({"pool": "cpu-general", "loader": "lexicon"})

    pool: Name
    loader: str = Field(min_length=1)
    regions: list[Name] | None = Field(default=None, examples=[["us-east-1"]])  # None: every region that has the pool
    # For `loader: onnx` (a platform team's own ONNX model): where its bytes are and their digest.
    artifact: str | None = Field(default=None, min_length=1, max_length=1024)
    sha256: Sha256 | None = None

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, artifact: str | None) -> str | None:
        return None if artifact is None else check_artifact(artifact)

    @model_validator(mode="after")
    def _onnx_has_artifact(self) -> ModelVersion:
        if self.loader == ModelFormat.ONNX:
            if self.artifact is None or self.sha256 is None:
                raise ValueError("loader 'onnx' needs an artifact (s3://BUCKET/KEY or a path) and its sha256")
        elif self.artifact is not None or self.sha256 is not None:
            raise ValueError(
                f"artifact and sha256 are for loader 'onnx'; loader {self.loader!r} brings its own weights")
        return self


class ModelKind(StrEnum):
    EMBEDDING = "embedding"
    CLASSIFIER = "classifier"
    GENERATIVE = "generative"


class Model(Strict):
    kind: ModelKind
    versions: dict[VersionName, ModelVersion] = Field(
        min_length=1, examples=[{"v1": {"pool": "cpu-general", "loader": "lexicon"}}])


class TenantRegions(Strict):
    model_config = example({"home": "us-east-1", "allowed": ["us-east-1"]})

    home: Name
    allowed: list[Name] = Field(min_length=1, examples=[["us-east-1", "eu-west-1"]])
    # Where the tenant's traffic may go when its home region cannot serve; the residency policy keeps
    # it inside `allowed`.
    failover: list[Name] = Field(default_factory=list, examples=[["eu-west-1"]])

    @field_validator("allowed", "failover")
    @classmethod
    def _each_once(cls, regions: list[str]) -> list[str]:
        _reject_duplicates(regions, "region")  # on the list's own field: which list holds it
        return regions

    @model_validator(mode="after")
    def _home_is_allowed(self) -> TenantRegions:
        if self.home not in self.allowed:
            raise ValueError(f"home region {self.home!r} must be one of the allowed regions "
                             f"({', '.join(self.allowed)}): add it to regions.allowed, or make one of those home")
        return self


class ModelGrant(Strict):
    """The versions of one model a tenant may use, with its traffic split in percent."""

    model_config = example({"split": {"v1": 100}})

    split: dict[VersionName, int] = Field(min_length=1, examples=[{"v1": 90, "v2": 10}])

    @field_validator("split")
    @classmethod
    def _split_is_percentages(cls, split: dict[str, int]) -> dict[str, int]:
        return check_split(split)


def check_split(split: dict[str, int]) -> dict[str, int]:
    # Every weight out of range at once: a fix for the first alone would only bring up the next.
    bad = [f"{version!r} got {pct}" for version, pct in split.items() if not 0 <= pct <= 100]
    if bad:
        raise ValueError(f"{'weight' if len(bad) == 1 else 'weights'} must be between 0 and 100: {capped(bad, 8)}")
    total = sum(split.values())
    if total != 100:
        raise ValueError(f"weights must add up to 100, got {total}")
    return split


class OwnModelVersion(Strict):
    model_config = example({"artifact": "../models/acme/router/1/model.onnx", "sha256": "<64 hex digits>"})

    artifact: str = Field(min_length=1, max_length=1024)
    sha256: Sha256
    # The artifact's size: measured by the loader for a local path; for s3:// the tenant may declare
    # it (the config load reads no bucket), and policy/models holds it to the tier's cap.
    bytes: int | None = Field(default=None, ge=1)

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, artifact: str) -> str:
        return check_artifact(artifact)


class OwnModel(Strict):
    """A model the tenant brings (docs/design/0003): its name lives in the tenant's namespace."""

    format: ModelFormat
    # For `head`: the catalog model and version it runs over, as `model/version` (embedder/v1).
    base: str | None = Field(default=None, pattern=_pattern(
        r"^[a-z][a-z0-9-]{0,40}[a-z0-9]/[a-z0-9][a-z0-9.-]{0,20}$",
        "must be a catalog model and one of its versions, as model/version (e.g. embedder/v1)"))
    pool: Name
    versions: dict[VersionName, OwnModelVersion] = Field(
        min_length=1, examples=[{"1": {"artifact": "../models/acme/router/1/model.onnx", "sha256": "<64 hex digits>"}}])
    # Percent per version, adding up to 100; may be left out when there is one version.
    split: dict[VersionName, int] = Field(default_factory=dict, examples=[{"1": 90, "2": 10}])

    @model_validator(mode="after")
    def _consistent(self) -> OwnModel:
        if self.format is ModelFormat.HEAD and self.base is None:
            raise ValueError("a head model needs base: the catalog model and version it runs over (e.g. embedder/v1)")
        if self.format is not ModelFormat.HEAD and self.base is not None:
            raise ValueError(f"base is only for format 'head', not {str(self.format)!r}")
        if not self.split:
            if len(self.versions) > 1:
                versions = ", ".join(sorted(self.versions))
                raise ValueError(f"split is required with more than one version (versions: {versions})")
            object.__setattr__(self, "split", {next(iter(self.versions)): 100})
        check_split(self.split)
        unknown = sorted(set(self.split) - set(self.versions))
        if unknown:
            raise ValueError(f"split names versions that are not declared: {', '.join(unknown)} "
                             f"(versions: {', '.join(sorted(self.versions))})")
        return self

    @property
    def base_model(self) -> tuple[str, str] | None:
        if self.base is None:
            return None
        model, _, version = self.base.partition("/")
        return model, version


class PiiRules(Strict):
    """A tenant's own additions to what its data class requires (the PII policy decides the rest)."""

    model_config = example({"redact": ["email"]})

    redact: list[PiiEntity] = Field(default_factory=list, examples=[["email"]])
    block: list[PiiEntity] = Field(default_factory=list, examples=[["credit_card"]])
    # Replaced by the tenant's keyed pseudonym instead of a placeholder (stable per tenant, so its
    # analytics can join on it); the PII policy decides where that may replace redaction.
    pseudonymise: list[PiiEntity] = Field(default_factory=list, examples=[["email"]])
    # Models the tenant asks to receive its raw input; the PII policy refuses any it does not trust.
    unredacted_models: list[Name] = Field(default_factory=list, examples=[["classifier"]])

    @model_validator(mode="after")
    def _disjoint(self) -> PiiRules:
        for a, b in (("redact", "block"), ("pseudonymise", "redact"), ("pseudonymise", "block")):
            both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if both:
                raise ValueError(f"an entity type cannot be in both pii.{a} and pii.{b}: "
                                 f"[{', '.join(e.value for e in both)}] (list each in one of them)")
        return self


class TenantRateLimit(Strict):
    model_config = example({"shadow": True})

    # Count what the limits would refuse, refuse nothing: for rolling out a new or tighter limit.
    shadow: bool = False
    # No gateway rate limit at all (internal traffic); the tenant's other quotas still apply.
    exempt: bool = False


class Tenant(Strict):
    id: Name
    tier: Name
    weight: float | None = Field(default=None, gt=0, le=1000)
    regions: TenantRegions
    quotas: Quotas = Quotas()
    # The kind of data the tenant sends (e.g. personal, payment, health); the PII policy maps it to the
    # entities that must be redacted or blocked. None: the policy's default class.
    data_class: str | None = Field(default=None, min_length=1, max_length=64)
    pii: PiiRules = PiiRules()
    models: dict[Name, ModelGrant] = Field(default_factory=dict, examples=[{"embedder": {"split": {"v1": 100}}}])
    # Models the tenant brings itself; relative local artifact paths are relative to the tenant file.
    own_models: dict[Name, OwnModel] = Field(default_factory=dict)
    rate_limit: TenantRateLimit = TenantRateLimit()
    # Set by an offboarding (`fairshare tenant offboard`, or by hand in the pull request): the tenant gets
    # no routes anywhere and no tokens. None, not False, by default: policy documents stay as they were.
    offboard: bool | None = None
    # Pins the tenant to a cell (a region's dedicated cell, or a shared one) wherever it is served; None:
    # placed by hashing among the shared cells (xds_server/cells/assign.py).
    cell: Name | None = None


class AuthSettings(Strict):
    issuer: str = "fairshare-local"
    audience: str = "fairshare-gateway"
    tenant_claim: str = "tenant"
    token_ttl_seconds: int = Field(default=3600, ge=60, le=31 * 24 * 3600)


class UpstreamTls(Strict):
    """Mutual TLS from the gateway to the runtimes (xds_server.envoy.sds): Envoy presents its client
    certificate, the runtimes serve only it. The certificates' directory is where the gateway's pod
    mounts them (a launcher overrides it: `fairshare run` keeps its local CA in the state dir)."""

    enabled: bool = False
    sds_dir: str = Field(default="/etc/fairshare/upstream-tls", pattern=_pattern(
        r"^/[^\s]*$", "must be an absolute path without spaces (e.g. /etc/fairshare/upstream-tls)"))
    # With `enabled`, Envoy's other upstreams too: the xDS stream and the rate-limit service
    # (xds_server.controlplane.grpc_tls), the same client certificate, the control plane's name checked.
    # The control plane then needs --tls-dir; false keeps those two hops plaintext (a migration step).
    control_plane: bool = True

    @property
    def to_control_plane(self) -> bool:
        return self.enabled and self.control_plane


class GatewaySettings(Strict):
    # Envoy's own request timeout for inference calls; a hung model must not hold a client forever.
    request_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    # Envoy's ~100 stats per tenant cluster cost about half its CDS time and a third of its memory at
    # 10,000 tenants; per-tenant outcomes stay visible in the access log (tenant, status, flags).
    per_tenant_cluster_stats: bool = False
    # Run `envoy --mode validate` on what changed before publishing it, so a change Envoy would refuse
    # is rejected whole (Envoy itself applies the valid part of a response it NACKs).
    validate_before_publish: bool = True
    upstream_tls: UpstreamTls = UpstreamTls()


class RateLimitBackend(StrEnum):
    MEMORY = "memory"  # one process, one gateway: `make run`
    REDIS = "redis"  # shared by every gateway replica


class RateLimitSettings(Strict):
    """The global rate-limit service (xds_server/ratelimit/): where it listens and what it counts in.
    Backend, address and port are read when the control plane starts; the rest reloads with the config."""

    # Off unless the platform asks for it (config/platform.yaml does): a config without a ratelimit
    # section (a synthetic benchmark config) gets no rate-limit filters and needs no service.
    enabled: bool = False
    backend: RateLimitBackend = RateLimitBackend.MEMORY
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=18002, ge=1, le=65535)
    # Envoy waits this long for a decision before the tier's failure mode applies; the service gives
    # Redis half of it, so a slow Redis is answered by the service's own failure rule first.
    timeout_ms: int = Field(default=200, ge=5, le=5000)
    # Largest burst after idle, as a fraction of one period's limit: the GCRA bound is
    # limit * (elapsed / period) + burst over any interval (docs/ratelimit.md).
    burst_fraction: float = Field(default=0.2, gt=0, le=1)
    # Tokens reserved when an inference is admitted, settled against the runtime's real cost after it.
    token_estimate: int = Field(default=64, ge=1, le=1_000_000)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_one(cls, url: str | None) -> str | None:
        # Checked here, whatever the backend: redis.from_url refused a malformed one only when `serve` started,
        # with a traceback, after `validate` had said "config OK". The message hides the password.
        if url is not None and (problem := redis_url_problem(url)) is not None:
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _redis_has_url(self) -> RateLimitSettings:
        if self.backend == RateLimitBackend.REDIS and not self.redis_url:
            raise ValueError("ratelimit.backend 'redis' needs ratelimit.redis_url (e.g. redis://127.0.0.1:6379/0)")
        return self


class PolicyBackend(StrEnum):
    EMBEDDED = "embedded"  # regorus in a worker process of the control plane: nothing else to run
    OPA = "opa"  # an OPA server over its REST API (production: the same policies, OPA's own engine)


class PolicySettings(Strict):
    backend: PolicyBackend = PolicyBackend.EMBEDDED
    opa_url: str | None = Field(default=None, pattern=_pattern(
        r"^https?://[^\s/]+(:\d+)?/?$", "must be the OPA server's http:// or https:// URL without a path "
        "(e.g. http://localhost:8181)"))
    # Longest a policy evaluation may take; past it the change is rejected and the last good config serves.
    timeout_seconds: float = Field(default=10, gt=0, le=300)

    @field_validator("opa_url")
    @classmethod
    def _no_credentials_in_opa_url(cls, url: str | None) -> str | None:
        # The OPA client is given the host, port and scheme only, so a user and password here authenticate
        # nothing, and the URL is shown in errors, /status and the audit trail's refusal reasons.
        if url is not None and has_userinfo(url):
            raise ValueError(f"must not carry a user or password ({without_userinfo(url)}): the control plane "
                             "sends OPA no credentials; keep OPA on loopback beside it, as the chart's sidecar "
                             "is (http://127.0.0.1:8181), and write the URL without user@")
        return url

    @model_validator(mode="after")
    def _url_for_opa(self) -> PolicySettings:
        if self.backend is PolicyBackend.OPA and not self.opa_url:
            raise ValueError("the opa backend needs opa_url (e.g. http://localhost:8181)")
        return self


class ControlPlaneSettings(Strict):
    """How many control-plane replicas serve the region (`fairshare chart-values` carries it into the chart,
    so the chart and the config cannot disagree). Unset: the launcher decides (`fairshare run`: one, or
    --control-planes; the chart: controlPlane.replicas). And how many processes each shares a cold load
    among."""

    replicas: int | None = Field(default=None, ge=1, le=16)
    # Processes, the control plane's own included, a first load (or any reload that reads or compiles
    # thousands of tenants) shares its work among (xds_server/workers.py). Unset: the CPUs the control
    # plane may use (its affinity, and its cgroup's CPU quota: a pod's limits.cpu), at most 8; 1: its own
    # process alone.
    workers: int | None = Field(default=None, ge=1, le=64)


class CellSettings(Strict):
    # At most this many tenants in one cell: it bounds one gateway's memory, CDS time and the cost of an
    # endpoint change (docs/design/0001: ~2,500 tenants keep an endpoint change under a second).
    size: int = Field(default=2500, ge=1, le=1_000_000)
    # After the front tier sends a moved tenant to its new cell, how long its old cell keeps it, so
    # requests already routed there finish.
    drain_seconds: float = Field(default=5, ge=0, le=600)


class Platform(Strict):
    auth: AuthSettings = AuthSettings()
    cells: CellSettings = CellSettings()
    gateway: GatewaySettings = GatewaySettings()
    policy: PolicySettings = PolicySettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    controlplane: ControlPlaneSettings = ControlPlaneSettings()

    @model_validator(mode="after")
    def _shared_counters(self) -> Platform:
        # Each replica would count alone: a tenant spread over N replicas would get N times its limit.
        replicas = self.controlplane.replicas or 1
        if replicas > 1 and self.ratelimit.enabled and self.ratelimit.backend == RateLimitBackend.MEMORY:
            raise ValueError(
                f"ratelimit.backend 'memory' with controlplane.replicas {replicas}: each replica would count "
                "a tenant's requests alone (up to that many times its limit); set ratelimit.backend: redis "
                "(with ratelimit.redis_url), or controlplane.replicas: 1")
        return self


class EffectivePii(Strict):
    """What the runtime must do with the tenant's personal data, as the PII policy decided."""

    redact: list[PiiEntity]
    block: list[PiiEntity]
    pseudonymise: list[PiiEntity] = Field(default_factory=list)
    unredacted_models: list[Name] = Field(default_factory=list)


class ResolvedTenant(Strict):
    """A tenant with the policy's decisions applied: what every compiler stage consumes. Nothing here
    is computed outside policy/: weight and quotas (quota), routes (residency), PII rules (pii)."""

    spec: Tenant
    weight: float
    quotas: EffectiveQuotas
    # region -> model -> the versions (with traffic) the tenant's routes may hold there.
    routes: dict[Name, dict[Name, list[VersionName]]]
    pii: EffectivePii
    # region -> the tenant's own models routed there (policy/models: only regions it allows whose
    # pools hold them).
    own_routes: dict[Name, list[Name]] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def clamped(self) -> dict[str, tuple[int, int]]:
        """Each quota the tenant's file asks more of than its tier allows: name -> (asked, what it gets)."""
        out = {}
        for name, value in self.quotas.model_dump().items():
            asked = getattr(self.spec.quotas, name)
            if asked is not None and asked != value:
                out[name] = (asked, value)
        return out


def clamped_notes(cfg: PlatformConfig) -> list[str]:
    """One line per quota cut down to its tier's limit, for `fairshare validate` and `policy check` (the
    config is valid: the tenant gets its tier's limit, which its author may not expect)."""
    return [f"{t.id}: quotas.{name}: asked {_number(asked)}, clamped to tier {t.spec.tier}'s limit {_number(value)}"
            for t in cfg.tenants.values() for name, (asked, value) in t.clamped().items()]


def _number(value: float) -> str:
    """As the file would write it: 500, not 500.0 (requests_per_second is a float), 2.5 as 2.5."""
    return str(int(value)) if float(value).is_integer() else str(value)


class PlatformConfig(Strict):
    """The whole validated config: cross-references between files already checked."""

    platform: Platform
    tiers: dict[Name, Tier]
    regions: dict[Name, Region]
    models: dict[Name, Model]
    # In file-name order; after an edit that adds or removes none, the last config's table with the edited
    # tenants' values replaced (xds_server/layered.py `Revised`), not a copy.
    tenants: Mapping[Name, ResolvedTenant]
    # Tenants whose file says `offboard: true`, with their spec as written: known, but served nowhere (not in
    # `tenants`); their data class still decides how long their old log lines are kept (xds_server/retention).
    offboarded: dict[Name, Tenant] = Field(default_factory=dict)
    # Regions split into cells: region -> tenant -> the cell it belongs in (xds_server/cells/assign.py), for
    # every tenant served there. Regions without cells are absent.
    cells: dict[Name, dict[Name, Name]] = Field(default_factory=dict)

    @field_serializer("tenants", mode="wrap")
    def _tenants_as_dict(self, tenants: Mapping[str, ResolvedTenant], handler: SerializerFunctionWrapHandler) -> Any:
        return handler(as_dict(tenants))  # pydantic serialises a dict; an edited config's table is a Revised

    def version_regions(self, model: str, version: str) -> list[str]:
        """Regions in which a model version is deployed (its pool exists there)."""
        mv = self.models[model].versions[version]
        candidates = mv.regions if mv.regions is not None else list(self.regions)
        return [r for r in candidates if r in self.regions and self.regions[r].pool(mv.pool) is not None]


def _reject_duplicates(items: list[str], what: str) -> None:
    seen: set[str] = set()
    dups = sorted({i for i in items if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dups:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, dups))} (list each once)")
