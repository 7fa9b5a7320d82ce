"""Every setting of a runtime process, in one typed struct (filled from the command line by __main__)."""

from __future__ import annotations

from dataclasses import dataclass

from inference_images.runtime.models.artifacts import DEFAULT_DISK_BUDGET_MB
from inference_images.runtime.models.base import RequestLimits, request_limits
from inference_images.runtime.models.registry import ModelSpec
from inference_images.runtime.scheduling import DEFAULT_IDLE_CREDIT_S, DEFAULT_MAX_QUEUE, DEFAULT_POLICY, BatchLimit
from inference_images.runtime.tls import TlsFiles

# The port's environment default: a container image sets it once, for the server and its health probe.
PORT_ENV = "FAIRSHARE_PORT"
# The repository extension's port default (--admin-port), set by the images.
ADMIN_PORT_ENV = "FAIRSHARE_ADMIN_PORT"
# The plaintext health port's default (--health-port): with mutual TLS on the data-plane port, the image's
# health probe asks here.
HEALTH_PORT_ENV = "FAIRSHARE_HEALTH_PORT"


@dataclass(frozen=True, slots=True)
class Settings:
    region: str
    pool: str
    replica: str
    models: tuple[ModelSpec, ...]
    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the bound port is logged and returned by lifecycle.serve.
    port: int = 8080
    # Only for direct benchmarks: requests without x-fairshare-tenant run as tenant "anonymous".
    allow_anonymous: bool = False
    # After SIGTERM: keep serving this long with readiness failing, so the gateway stops routing here
    # before the port closes (like a preStop sleep).
    drain_delay_s: float = 0.0
    # Then how long to wait for in-flight requests before cancelling them.
    shutdown_grace_s: float = 10.0
    # Larger bodies get 413; bounds memory per request (a 64-text MiniLM batch is a few tens of KB).
    max_body_bytes: int = 8 * 1024 * 1024
    access_log: bool = True
    # The fairness policy (scheduling.POLICIES): "wfq" shares the worker by tenant weight, "fifo" does not.
    scheduler: str = DEFAULT_POLICY
    # wfq: seconds of weight-normalised service a tenant returning from idle may run ahead of the others.
    idle_credit_s: float = DEFAULT_IDLE_CREDIT_S
    # A tenant's queue bound when the gateway sends none (x-fairshare-max-queue).
    default_max_queue: int = DEFAULT_MAX_QUEUE
    # Per model name: batch size and wait limits; models not named run one request per forward pass.
    batch_limits: tuple[tuple[str, BatchLimit], ...] = ()
    # Where verified model artifacts are kept by checksum; None: $FAIRSHARE_ARTIFACT_CACHE or a temp dir.
    artifact_cache: str | None = None
    # Disk for those copies (MiB); past it the least recently used go, 0 keeps none (models.artifacts).
    artifact_cache_mb: float = float(DEFAULT_DISK_BUDGET_MB)
    # Per model name: rows and bytes one request may carry, replacing what the model declares.
    request_limits: tuple[tuple[str, RequestLimits], ...] = ()
    # The model cache for tenants' own models (models.cache): memory budget, loader threads, and how long a
    # model stays before it may be evicted. Catalog models are loaded at start and never evicted.
    cache_budget_mb: float = 1024.0
    loader_threads: int = 2
    min_residency_s: float = 30.0
    # The OIP model-repository extension (index, load, unload) listens here; None: not served. Never the
    # data-plane port: Envoy has no cluster for it.
    admin_port: int | None = None
    # Mutual TLS on the data-plane port (runtime.tls): only the gateway's certificate is served. None:
    # plaintext, trusted only because nothing else can reach the port.
    tls: TlsFiles | None = None
    # How often the certificate files are checked for a rotation.
    tls_reload_s: float = 1.0
    # Plaintext liveness and readiness only (kubelet has no client certificate); None: not served.
    health_port: int | None = None
    # Where tenants' pseudonymisation keys come from (pii.keys.parse_source: secretsmanager:PREFIX or
    # file:DIR); None: requests whose rules pseudonymise anything are refused (503), never passed raw.
    pseudonymisation_keys: str | None = None
    # How long a key is used before it is read again (a rotated key is picked up within this).
    pseudonymisation_key_ttl_s: float = 300.0

    def limits_for(self, model: object) -> RequestLimits:
        """What one request to ``model`` may carry: its declared limits (or the default), overridden by
        ``request_limits`` for its name."""
        declared = request_limits(model)
        for name, override in self.request_limits:
            if name == getattr(model, "name", None):
                return declared.overridden_by(override)
        return declared
