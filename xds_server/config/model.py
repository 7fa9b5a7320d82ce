"""Typed config model. Unknown fields are errors everywhere (extra="forbid"), so a typo never passes silently."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$")]
VersionName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,20}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PiiEntity(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    NATIONAL_ID = "national_id"
    IP_ADDRESS = "ip_address"


class Quotas(Strict):
    """Per-tenant limits. Absent fields fall back to the tier's defaults."""

    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    requests_per_second: float | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    gpus: int | None = Field(default=None, ge=0)


class EffectiveQuotas(Strict):
    concurrency: int = Field(ge=1, le=100_000)
    requests_per_second: float = Field(gt=0)
    tokens_per_minute: int = Field(ge=1)
    gpus: int = Field(ge=0)


class Tier(Strict):
    weight: float = Field(gt=0, le=1000)
    quotas: EffectiveQuotas


class Pool(Strict):
    name: Name
    accelerator: str = "cpu"
    replicas: int = Field(default=2, ge=1, le=1000)
    gpus_per_replica: int = Field(default=0, ge=0, le=16)


class Region(Strict):
    id: Name
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    pools: list[Pool] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[Pool]) -> list[Pool]:
        _reject_duplicates([p.name for p in pools], "pool")
        return pools

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


class ModelVersion(Strict):
    pool: Name
    loader: str = Field(min_length=1)
    regions: list[Name] | None = None  # None: every region that has the pool


class ModelKind(StrEnum):
    EMBEDDING = "embedding"
    CLASSIFIER = "classifier"
    GENERATIVE = "generative"


class Model(Strict):
    kind: ModelKind
    versions: dict[VersionName, ModelVersion] = Field(min_length=1)


class TenantRegions(Strict):
    home: Name
    allowed: list[Name] = Field(min_length=1)

    @model_validator(mode="after")
    def _home_is_allowed(self) -> TenantRegions:
        _reject_duplicates(self.allowed, "region")
        if self.home not in self.allowed:
            raise ValueError(f"home region {self.home!r} must be one of the allowed regions {self.allowed}")
        return self


class ModelGrant(Strict):
    """The versions of one model a tenant may use, with its traffic split in percent."""

    split: dict[VersionName, int] = Field(min_length=1)

    @field_validator("split")
    @classmethod
    def _split_is_percentages(cls, split: dict[str, int]) -> dict[str, int]:
        for version, pct in split.items():
            if not 0 <= pct <= 100:
                raise ValueError(f"weight of {version!r} must be between 0 and 100, got {pct}")
        total = sum(split.values())
        if total != 100:
            raise ValueError(f"weights must add up to 100, got {total}")
        return split


class PiiRules(Strict):
    redact: list[PiiEntity] = Field(default_factory=list)
    block: list[PiiEntity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> PiiRules:
        both = sorted(set(self.redact) & set(self.block))
        if both:
            raise ValueError(f"an entity type cannot be both redacted and blocked: {both}")
        return self


class Tenant(Strict):
    id: Name
    tier: Name
    weight: float | None = Field(default=None, gt=0, le=1000)
    regions: TenantRegions
    quotas: Quotas = Quotas()
    pii: PiiRules = PiiRules()
    models: dict[Name, ModelGrant] = Field(default_factory=dict)


class AuthSettings(Strict):
    issuer: str = "fairshare-local"
    audience: str = "fairshare-gateway"
    tenant_claim: str = "tenant"
    token_ttl_seconds: int = Field(default=3600, ge=60, le=31 * 24 * 3600)


class GatewaySettings(Strict):
    # Envoy's own request timeout for inference calls; a hung model must not hold a client forever.
    request_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    # Envoy's ~100 stats per tenant cluster cost about half its CDS time and a third of its memory at
    # 10,000 tenants; per-tenant outcomes stay visible in the access log (tenant, status, flags).
    per_tenant_cluster_stats: bool = False
    # Run `envoy --mode validate` on what changed before publishing it, so a change Envoy would refuse
    # is rejected whole (Envoy itself applies the valid part of a response it NACKs).
    validate_before_publish: bool = True


class Platform(Strict):
    auth: AuthSettings = AuthSettings()
    gateway: GatewaySettings = GatewaySettings()


class ResolvedTenant(Strict):
    """A tenant with its tier defaults applied: what every compiler stage consumes."""

    spec: Tenant
    weight: float
    quotas: EffectiveQuotas

    @property
    def id(self) -> str:
        return self.spec.id


class PlatformConfig(Strict):
    """The whole validated config: cross-references between files already checked."""

    platform: Platform
    tiers: dict[Name, Tier]
    regions: dict[Name, Region]
    models: dict[Name, Model]
    tenants: dict[Name, ResolvedTenant]

    def version_regions(self, model: str, version: str) -> list[str]:
        """Regions in which a model version is deployed (its pool exists there)."""
        mv = self.models[model].versions[version]
        candidates = mv.regions if mv.regions is not None else list(self.regions)
        return [r for r in candidates if r in self.regions and self.regions[r].pool(mv.pool) is not None]


def _reject_duplicates(items: list[str], what: str) -> None:
    seen: set[str] = set()
    dups = sorted({i for i in items if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dups:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, dups))}")
