"""The fairness scenario's platform: three tenants with weights 1:1:2 sharing one replica of a model whose
device time per request is fixed (``lexicon-simulated``), behind the real Envoy.

Shared by ``bench/fairness.py`` and ``tests/fairness/``, so the test checks the same setup the
benchmark measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.synth import set_gateway_ports
from inference_images.runtime.models.simulated import BATCH_MS_ENV, ROW_MS_ENV
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

MODEL = "classifier"
INFER_PATH = f"/v2/models/{MODEL}/infer"
REGION = "us-east-1"


@dataclass(frozen=True)
class TenantSpec:
    id: str
    tier: str
    weight: float


# A floods; B and C stay within their shares. C's tier weighs twice as much.
TENANTS = (TenantSpec("tenant-a", "standard", 1.0), TenantSpec("tenant-b", "standard", 1.0),
           TenantSpec("tenant-c", "premium", 2.0))


def share(tenant: TenantSpec) -> float:
    """The tenant's fraction of the worker when everyone is backlogged."""
    return tenant.weight / sum(t.weight for t in TENANTS)


def write_config(root: Path, gateway_port: int, concurrency: int, versions: tuple[str, ...] = ("v1",)) -> Path:
    """One region, one pool with ONE replica (the fixed pool), the simulated model, the three tenants.

    ``concurrency`` is every tenant's quota: Envoy's per-tenant circuit breakers and the runtime's
    per-tenant queue bound (x-fairshare-max-queue) both come from it. ``versions``: the model's, on the
    one replica; each tenant splits evenly across them (the first takes the remainder)."""
    cfg = root / "config"
    (cfg / "tenants").mkdir(parents=True, exist_ok=True)
    quotas = f"{{concurrency: {concurrency}, requests_per_second: 100000, tokens_per_minute: 1000000000, gpus: 0}}"
    (cfg / "tiers.yaml").write_text(
        f"tiers:\n  standard:\n    weight: 1\n    quotas: {quotas}\n"
        f"  premium:\n    weight: 2\n    quotas: {quotas}\n")
    (cfg / "regions.yaml").write_text(
        f"regions:\n  - id: {REGION}\n    gateway_port: {gateway_port}\n    pools: [{{name: sim, replicas: 1}}]\n")
    (cfg / "models.yaml").write_text(
        f"models:\n  {MODEL}:\n    kind: classifier\n    versions:\n"
        + "".join(f"      {v}: {{pool: sim, loader: lexicon-simulated}}\n" for v in versions))
    weights = [100 // len(versions) + (100 % len(versions) if i == 0 else 0) for i in range(len(versions))]
    split = ", ".join(f"{v}: {w}" for v, w in zip(versions, weights, strict=True))
    for tenant in TENANTS:
        (cfg / "tenants" / f"{tenant.id}.yaml").write_text(
            f"id: {tenant.id}\ntier: {tenant.tier}\nregions: {{home: {REGION}, allowed: [{REGION}]}}\n"
            f"models:\n  {MODEL}: {{split: {{{split}}}}}\n")
    set_gateway_ports(cfg, (gateway_port,))
    return cfg


@dataclass
class FairnessPlatform:
    platform: LocalPlatform
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.platform.gateway_url(REGION) + INFER_PATH

    @property
    def replica_metrics_url(self) -> str:
        """The one replica's Prometheus page, read directly (the measurement's view, not a client's)."""
        replica = self.platform.replicas[0]
        return f"http://{self.platform.opts.host}:{replica.port}/metrics"

    def use_scheduler(self, policy: str, extra: tuple[str, ...] = ()) -> None:
        self.platform.restart_replicas(("--scheduler", policy, "--no-access-log", *extra))


@contextmanager
def fairness_platform(root: Path, *, service_ms: float, concurrency: int = 16,
                      scheduler: str = "wfq", versions: tuple[str, ...] = ("v1",)) -> Iterator[FairnessPlatform]:
    """Start the platform (the replica's device takes ``service_ms`` per request) and stop it after."""
    cfg = write_config(root, free_port(), concurrency, versions)
    state = root / "state"
    platform = LocalPlatform(PlatformOptions(
        config_dir=cfg, state_dir=state, xds_port=free_port(), status_port=free_port(),
        runtime_args=("--scheduler", scheduler, "--no-access-log"),
        runtime_env=((BATCH_MS_ENV, f"{service_ms:g}"), (ROW_MS_ENV, "0")),
    ))
    platform.start()
    try:
        assert platform.config is not None
        key = SigningKey.load_or_create(state)
        tokens = {t.id: issue_token(key, platform.config.platform.auth, t.id) for t in TENANTS}
        yield FairnessPlatform(platform, tokens)
    finally:
        platform.stop()
