"""Prometheus metrics for one runtime process.

Each ``RuntimeMetrics`` owns its registry (not the global one), so several servers can live in one test
process. Label values come only from configured model names/versions and gateway-set tenant ids, never
from the URL of a request for an unknown model, so a client cannot blow up the series count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from inference_images.runtime.models.cache import ModelCache
from inference_images.runtime.models.registry import ModelRepository
from inference_images.runtime.pii.metrics import PiiMetrics
from inference_images.runtime.scheduling import Outcome

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Stands in for the model label when the request named no served model.
UNKNOWN = "unknown"
# The model label of every request for a tenant's own model: thousands of them must not each be a series.
# Per model only the top ones by traffic are named (fairshare_runtime_own_model_*), TOP_MODELS of them.
OWN_MODEL = "own"
TOP_MODELS = 50


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fairshare_runtime_requests",
            "Inference requests by model, version and HTTP status.",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fairshare_runtime_request_duration_seconds",
            "Inference request time from body read to response, queueing included.",
            ["model", "version"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        # Per tenant because fairness is judged per tenant; the series count is bounded by the tenants
        # routed to this replica. A counter, not a histogram, to keep it to one series per tenant.
        self.service_seconds = Counter(
            "fairshare_runtime_service_seconds",
            "Model worker time spent on each tenant's requests.",
            ["tenant"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "fairshare_runtime_queue_depth",
            "Requests waiting on the scheduler (queued plus running).",
            registry=self.registry,
        )
        # The scheduler's view per tenant (it reports through the SchedulerEvents methods below).
        self.tenant_queue_depth = Gauge(
            "fairshare_runtime_tenant_queue_depth",
            "Requests of each tenant queued on this replica, not yet running.",
            ["tenant"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "fairshare_runtime_queue_wait_seconds",
            "Time each request waited in its tenant's queue before it was picked to run.",
            ["tenant"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.scheduled = Counter(
            "fairshare_runtime_scheduled_requests",
            "Requests each tenant handed to the scheduler, by outcome: ok, error, rejected_queue_full "
            "(429 at once), expired (the deadline: refused before queueing, cannot finish in time, stopped "
            "mid-run), cancelled (client left).",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fairshare_runtime_batch_size",
            "Requests per forward pass, by model.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "fairshare_runtime_model_ready",
            "1 when the model version is loaded and serving, else 0.",
            ["model", "version"],
            registry=self.registry,
        )
        self.pii = PiiMetrics(self.registry)
        # The model cache (tenants' own models): per tenant, so cardinality is the tenants routed here.
        self.cache_hits = Counter(
            "fairshare_runtime_cache_hits", "Own-model requests served by a resident model.", ["tenant"],
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "fairshare_runtime_cache_misses", "Own-model requests that had to wait for a load (or found it failed).",
            ["tenant"], registry=self.registry,
        )
        self.cache_load_seconds = Counter(
            "fairshare_runtime_cache_load_seconds",
            "Seconds spent loading each tenant's own models (fetch, sha256 check, build), charged to its fair share.",
            ["tenant"], registry=self.registry,
        )
        self.cache_loads = Counter(
            "fairshare_runtime_cache_loads", "Own-model loads by result (ok, failed).", ["tenant", "result"],
            registry=self.registry,
        )
        self.cache_evictions = Counter(
            "fairshare_runtime_cache_evictions", "Own models evicted to make room, by owning tenant.", ["tenant"],
            registry=self.registry,
        )
        self.cache_resident_bytes = Gauge(
            "fairshare_runtime_cache_resident_bytes", "Measured bytes of each tenant's resident own models.",
            ["tenant"], registry=self.registry,
        )
        self.cache_budget_bytes = Gauge(
            "fairshare_runtime_cache_budget_bytes", "The model cache's memory budget on this replica.",
            registry=self.registry,
        )
        self.top_model_requests = Gauge(
            "fairshare_runtime_own_model_requests",
            f"Requests (hits plus misses) of the {TOP_MODELS} own models with the most traffic on this replica.",
            ["model", "version"], registry=self.registry,
        )
        self.top_model_bytes = Gauge(
            "fairshare_runtime_own_model_resident_bytes",
            f"Resident bytes of the {TOP_MODELS} own models with the most traffic on this replica.",
            ["model", "version"], registry=self.registry,
        )

    def observe_service(self, tenant: str, seconds: float) -> None:
        self.service_seconds.labels(tenant).inc(seconds)

    def observe_wait(self, tenant: str, seconds: float) -> None:
        self.queue_wait.labels(tenant).observe(seconds)

    def observe_outcome(self, tenant: str, outcome: Outcome) -> None:
        self.scheduled.labels(tenant, outcome.value).inc()

    def observe_depth(self, tenant: str, depth: int) -> None:
        self.tenant_queue_depth.labels(tenant).set(depth)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)

    def cache_hit(self, tenant: str) -> None:
        self.cache_hits.labels(tenant).inc()

    def cache_miss(self, tenant: str) -> None:
        self.cache_misses.labels(tenant).inc()

    def cache_load(self, tenant: str, seconds: float, ok: bool) -> None:
        self.cache_load_seconds.labels(tenant).inc(seconds)
        self.cache_loads.labels(tenant, "ok" if ok else "failed").inc()

    def cache_eviction(self, tenant: str) -> None:
        self.cache_evictions.labels(tenant).inc()

    def render(self, repository: ModelRepository, queue_depth: int, cache: ModelCache | None = None) -> bytes:
        # Point-in-time values are read at scrape time rather than pushed on every change.
        self.queue_depth.set(queue_depth)
        for entry in repository.entries():
            self.model_ready.labels(entry.spec.name, entry.spec.version).set(1 if entry.ready else 0)
        if cache is not None:
            self._render_cache(cache)
        return generate_latest(self.registry)

    def _render_cache(self, cache: ModelCache) -> None:
        self.cache_budget_bytes.set(cache.budget_bytes)
        # Cleared first: a tenant whose last model went reads 0 by absence, and the top set changes.
        self.cache_resident_bytes.clear()
        for tenant, size in cache.resident_bytes_by_tenant().items():
            self.cache_resident_bytes.labels(tenant).set(size)
        self.top_model_requests.clear()
        self.top_model_bytes.clear()
        for row in cache.top_models(TOP_MODELS):
            self.top_model_requests.labels(row.name, row.version).set(row.hits + row.misses)
            self.top_model_bytes.labels(row.name, row.version).set(row.bytes if row.state == "ready" else 0)
