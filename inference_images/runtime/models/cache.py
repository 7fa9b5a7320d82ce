"""The model cache: tenants' own models, loaded on first use and evicted fairly under a memory budget.

The server and the repository extension call a small interface and never see how eviction works:

- ``acquire(ref, weight)``: the resident model, loading it first if needed (awaits; raises
  ``ModelUnavailableError`` with the status, the reason and a Retry-After);
- ``unload(owner, name, version=None)``, ``index()``, ``resident_bytes_by_tenant()``, ``top_models(k)``.

Rules (docs/design/0003):

- **Single flight**: a model has one entry; N concurrent first requests await one load.
- **Loader pool**: loads (download, sha256 check, session build) run on a bounded ``ThreadPoolExecutor``,
  never on the event loop or the scheduler's worker. The cache's own state lives on the event loop, like
  the scheduler's policies, so it needs no locks.
- **Fair loading**: loads wait in a queue per tenant, and a free loader thread takes the next load of the
  tenant with the least load time so far relative to its weight (virtual time, ``scheduling.wfq``'s
  policy, charged with each load's seconds), at most one load in flight per tenant. A tenant cycling
  through cold models therefore holds one loader thread at most, and another tenant's first load waits
  for at most the load in flight, not behind the cycler's backlog. Loader threads run at a lower CPU
  priority (``artifacts.background_priority``), so on a contended CPU the serving path wins the cores.
- **Failures**: the model is FAILED with a reason naming it and the check; requests answer 503 with it
  until an exponential backoff has passed, then the next request retries the load.
- **Budget**: resident models are sized by their measured footprint (``models.footprint``); a model larger
  than the whole budget fails with that reason.
- **Eviction**: to admit a model, take from the tenant most above its weighted share of the budget, its
  least recently used model first, recomputing after each eviction. Shares are split among tenants with
  demand in the recent window by the weight the gateway sent; a tenant without recent demand has a share
  of 0, so idle tenants' models go first. A tenant at or under its share loses nothing, whatever others
  do; a model younger than the minimum residency age is never evicted (no thrash). When nothing can go,
  the load is refused with 503 and a Retry-After (the model is not failed: it is not its fault).
  Catalog models never enter the cache: they are pinned by construction (loaded at start, listed by the
  repository extension beside the cache's models); ``pinned_bytes`` takes what they hold off the budget.
- **Cost**: each load's seconds are charged to the owning tenant (``charge``, the fair scheduler's virtual
  time), so a tenant cycling through cold models pays for its loads and the others do not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from inference_images.runtime.models.artifacts import (
    ArtifactError,
    ChecksumMismatchError,
    SizeMismatchError,
    background_priority,
)
from inference_images.runtime.models.base import Model
from inference_images.runtime.models.own import ModelLoader, OwnModelKey, OwnModelRef
from inference_images.runtime.scheduling.interface import Head
from inference_images.runtime.scheduling.wfq import VirtualTimePolicy

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_BUDGET_BYTES = 1024 * MIB
DEFAULT_LOADER_THREADS = 2
DEFAULT_MIN_RESIDENCY_S = 30.0
# A tenant "has demand" for this long after its last request; its share of the budget lasts as long.
DEFAULT_DEMAND_WINDOW_S = 120.0
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 300.0
# Records of models no longer resident (their counts, last footprint, failure) kept for the index; once
# past it, the oldest go down to 90% of it in one sweep, so the sweep's cost is spread over many admissions.
_MAX_RECORDS = 50_000
_RECORDS_AFTER_SWEEP = _MAX_RECORDS * 9 // 10


class CacheState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    EVICTED = "evicted"


class ModelUnavailableError(Exception):
    """The model cannot serve now: 503 with ``reason`` and, when a retry may succeed, ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def failure_reason(what: str, ref: OwnModelRef, exc: Exception) -> str:
    """What a failed load tells the tenant's callers (the 503, the index): the model and the check that failed.
    An artefact's own message names where this replica reads it and, for a mismatch, both digests: that
    stays in the replica's log (the caller's ``detail``)."""
    if isinstance(exc, ChecksumMismatchError):
        return f"{what}: its artifact failed its integrity check (sha256 mismatch)"
    if isinstance(exc, SizeMismatchError):
        return f"{what}: its artifact failed its integrity check (not the size its tenant's file declares)"
    if isinstance(exc, ArtifactError) and not ref.artifact.is_s3:
        return f"{what}: its artifact cannot be read on this replica"
    # Loader messages name the model and the check (S3 objects, formats); never tensor data.
    message = str(exc)
    return message if message.startswith(("model '", "head model '", "base model '")) else f"{what}: {message}"


class CacheEvents(Protocol):
    """Per-tenant facts for metrics (``metrics.RuntimeMetrics`` implements it)."""

    def cache_hit(self, tenant: str) -> None: ...

    def cache_miss(self, tenant: str) -> None: ...

    def cache_load(self, tenant: str, seconds: float, ok: bool) -> None: ...

    def cache_eviction(self, tenant: str) -> None: ...


class _NoEvents:
    def cache_hit(self, tenant: str) -> None:
        pass

    def cache_miss(self, tenant: str) -> None:
        pass

    def cache_load(self, tenant: str, seconds: float, ok: bool) -> None:
        pass

    def cache_eviction(self, tenant: str) -> None:
        pass


# Told (tenant, seconds, weight) after each load, succeeded or failed: the scheduler's ``charge``.
Charge = Callable[[str, float, float], None]


@dataclass(eq=False, slots=True)
class _Entry:
    ref: OwnModelRef
    state: CacheState = CacheState.EVICTED
    reason: str | None = None
    model: Model | None = None
    # Measured while resident; kept after eviction as the estimate for the next admission.
    bytes: int = 0
    loaded_at: float = 0.0
    last_used: float = 0.0
    hits: int = 0
    misses: int = 0
    load_seconds: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    pending: asyncio.Future[Model] | None = None


@dataclass(eq=False, slots=True)
class _LoadTicket:
    """A load waiting for a loader thread: ``go`` is set when it may start."""

    tenant: str
    weight: float
    seq: int
    go: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One model as the repository extension's index reports it."""

    name: str
    version: str
    owner: str
    state: str
    reason: str | None
    bytes: int
    hits: int
    misses: int
    load_seconds: float
    format: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Resident:
    """What eviction may see of a resident model."""

    key: OwnModelKey
    bytes: int
    loaded_at: float
    last_used: float


def choose_victims(
    resident: Iterable[Resident],
    demand: Mapping[str, float],
    requester: str,
    need: int,
    budget: int,
    now: float,
    min_residency_s: float,
) -> list[OwnModelKey] | None:
    """The models to evict so ``need`` more bytes fit in ``budget``, by the fair rule (module docstring);
    None when the rule cannot free enough. ``demand`` maps each tenant with recent demand to its weight
    (the requester included)."""
    models = list(resident)
    free = budget - sum(m.bytes for m in models)
    if free >= need:
        return []
    usage: dict[str, int] = {}
    candidates: dict[str, list[Resident]] = {}
    for m in models:
        usage[m.key.owner] = usage.get(m.key.owner, 0) + m.bytes
        if now - m.loaded_at >= min_residency_s:
            candidates.setdefault(m.key.owner, []).append(m)
    # Counted as if admitted: a tenant whose new model would take it past its share pays for it itself.
    usage[requester] = usage.get(requester, 0) + need
    total_weight = sum(demand.values())
    shares = {t: budget * demand.get(t, 0.0) / total_weight if total_weight > 0 else 0.0 for t in usage}
    for queue in candidates.values():
        queue.sort(key=lambda m: (m.last_used, m.loaded_at))
    victims: list[OwnModelKey] = []
    while free < need:
        over = [(usage[t] - shares[t], t) for t, queue in candidates.items() if queue and usage[t] > shares[t]]
        if not over:
            return None
        _, tenant = max(over, key=lambda item: (item[0], item[1]))
        victim = candidates[tenant].pop(0)
        victims.append(victim.key)
        usage[tenant] -= victim.bytes
        free += victim.bytes
    return victims


class ModelCache:
    """Tenants' own models on one replica. Call every method from the event loop."""

    def __init__(
        self,
        loader: ModelLoader,
        *,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        loader_threads: int = DEFAULT_LOADER_THREADS,
        min_residency_s: float = DEFAULT_MIN_RESIDENCY_S,
        demand_window_s: float = DEFAULT_DEMAND_WINDOW_S,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        charge: Charge | None = None,
        events: CacheEvents | None = None,
        pinned_bytes: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_bytes < 0 or loader_threads < 1 or min_residency_s < 0 or backoff_s <= 0:
            raise ValueError("cache budget and minimum residency must be >= 0, loader threads and backoff > 0")
        self.budget_bytes = budget_bytes
        self.min_residency_s = min_residency_s
        self.demand_window_s = demand_window_s
        self._loader = loader
        # At a lower CPU priority than the serving threads: a load yields the cores to inference.
        self._pool = ThreadPoolExecutor(
            max_workers=loader_threads, thread_name_prefix="model-loader", initializer=background_priority
        )
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._charge = charge
        self._events: CacheEvents = events or _NoEvents()
        self._pinned_bytes = pinned_bytes
        self._clock = clock
        self._entries: dict[OwnModelKey, _Entry] = {}
        # The READY entries by owner, and their bytes: what eviction looks at, O(resident) not O(records).
        self._resident: dict[str, dict[OwnModelKey, _Entry]] = {}
        self._resident_bytes: dict[str, int] = {}
        # tenant -> (last request time, weight it came with)
        self._demand: dict[str, tuple[float, float]] = {}
        # Fair loading: per-tenant queues of loads waiting for a thread, the tenants with a load in flight,
        # and the order between tenants (virtual time of load seconds per weight).
        self._free_loaders = loader_threads
        self._load_queues: dict[str, deque[_LoadTicket]] = {}
        self._loading: set[str] = set()
        self._load_order = VirtualTimePolicy()
        self._load_seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the server's side --------------------------------------------------------------------------------

    async def acquire(self, ref: OwnModelRef, weight: float = 1.0, *, operator: bool = False) -> Model:
        """The resident model for ``ref``, loading it (once, however many callers wait) if needed.

        ``operator``: an explicit load (the repository extension), which is neither the tenant's demand
        nor a hit or miss, so preloading a model earns its tenant no share of the budget."""
        now = self._clock()
        if not operator:
            self._demand[ref.owner] = (now, weight)
        entry = self._entries.get(ref.key)
        if entry is not None and entry.state is CacheState.READY and entry.model is not None:
            if not operator:
                entry.hits += 1
                entry.last_used = now
                self._events.cache_hit(ref.owner)
            return entry.model
        if entry is None:
            entry = self._entries[ref.key] = _Entry(ref)
            self._forget_old_records()
        if not operator:
            entry.misses += 1
            self._events.cache_miss(ref.owner)
        if entry.state is CacheState.FAILED and now < entry.retry_at:
            raise ModelUnavailableError(entry.reason or "load failed", entry.retry_at - now)
        if entry.pending is None:
            self._start_load(entry, weight)
        assert entry.pending is not None
        # Shielded: a caller that goes away does not cancel the load the others wait for.
        model = await asyncio.shield(entry.pending)
        entry.last_used = self._clock()
        return model

    def state(self, ref: OwnModelRef) -> tuple[CacheState, str | None]:
        entry = self._entries.get(ref.key)
        return (entry.state, entry.reason) if entry is not None else (CacheState.EVICTED, None)

    def unload(self, owner: str, name: str, version: str | None = None) -> int:
        """Drop every resident (or loading) version of ``owner:name`` (or just ``version``); how many.

        An in-flight load finishes for those already waiting, and is then discarded."""
        keys = [
            k
            for k in self._entries
            if k.owner == owner and k.name == name and (version is None or k.version == version)
        ]
        dropped = 0
        for key in keys:
            entry = self._entries.pop(key)
            if entry.state in (CacheState.READY, CacheState.LOADING):
                dropped += 1
            self._not_resident(entry)
            entry.model = None
            log.info("model unloaded", extra={"model": key.qualified, "version": key.version})
        return dropped

    def known(self, owner: str, name: str) -> bool:
        return any(k.owner == owner and k.name == name for k in self._entries)

    def index(self) -> list[IndexRow]:
        return [
            IndexRow(
                name=key.qualified,
                version=key.version,
                owner=key.owner,
                state=entry.state.value,
                reason=entry.reason,
                bytes=entry.bytes,
                hits=entry.hits,
                misses=entry.misses,
                load_seconds=round(entry.load_seconds, 6),
                format=entry.ref.format,
                sha256=key.sha256,
            )
            for key, entry in sorted(self._entries.items(), key=lambda item: (item[0].qualified, item[0].version))
        ]

    def resident_bytes(self) -> int:
        return sum(self._resident_bytes.values())

    def resident_bytes_by_tenant(self) -> dict[str, int]:
        return dict(self._resident_bytes)

    def top_models(self, k: int) -> list[IndexRow]:
        """The ``k`` models with the most requests (hits + misses): the only ones metrics name."""
        rows = self.index()
        rows.sort(key=lambda row: (-(row.hits + row.misses), row.name, row.version))
        return rows[:k]

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- loading ------------------------------------------------------------------------------------------

    def _own_budget(self) -> int:
        return max(self.budget_bytes - self._pinned_bytes(), 0)

    def _start_load(self, entry: _Entry, weight: float) -> None:
        loop = asyncio.get_running_loop()
        entry.pending = loop.create_future()
        # Retrieved so an unawaited failure (every caller gone) is not logged as "never retrieved".
        entry.pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        entry.state, entry.reason = CacheState.LOADING, None
        task = loop.create_task(self._load(entry, weight))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, entry: _Entry, weight: float) -> None:
        ref = entry.ref
        assert entry.pending is not None
        pending = entry.pending
        try:
            model = await self._load_and_admit(entry, weight)
        except asyncio.CancelledError:  # the cache is closing: nobody must wait for this load forever
            pending.set_exception(ModelUnavailableError(f"model '{ref.qualified}': the model cache is closing"))
            raise
        except ModelUnavailableError as exc:
            pending.set_exception(exc)
        except Exception as exc:  # a bug in a format must not leave waiters hanging
            log.error("model load crashed", extra={"model": ref.qualified, "error_type": type(exc).__name__})
            self._fail(entry, f"model '{ref.qualified}' version '{ref.version}': internal error while loading")
            pending.set_exception(ModelUnavailableError(entry.reason or "", entry.retry_at - self._clock()))
        else:
            pending.set_result(model)
        finally:
            entry.pending = None

    async def _load_and_admit(self, entry: _Entry, weight: float) -> Model:
        ref = entry.ref
        what = f"model '{ref.qualified}' version '{ref.version}'"
        budget = self._own_budget()
        # A footprint known from an earlier residency lets a hopeless load be refused before it starts.
        if entry.bytes > budget:
            return self._too_large(entry, what, entry.bytes, budget)
        if entry.bytes and self._victims(ref, entry.bytes, budget) is None:
            return self._refuse(entry, what, entry.bytes, budget)
        await self._loader_slot(ref.owner, weight)
        log.info("model loading", extra={"model": ref.qualified, "version": ref.version, "artifact": ref.artifact.uri})
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self._pool, self._loader, ref)
        except Exception as exc:
            seconds = time.perf_counter() - start
            self._release_slot(ref.owner)
            self._account(entry, seconds, weight, ok=False)
            reason = failure_reason(what, ref, exc)
            self._fail(entry, reason)
            log.warning(
                "model failed to load",
                extra={"model": ref.qualified, "version": ref.version, "reason": reason, "detail": str(exc)},
            )
            raise ModelUnavailableError(reason, entry.retry_at - self._clock()) from None
        except BaseException:  # cancelled (closing): the thread finishes on its own, the slot is moot
            self._release_slot(ref.owner)
            raise
        seconds = time.perf_counter() - start
        self._release_slot(ref.owner)
        self._account(entry, seconds, weight, ok=True)
        if self._entries.get(ref.key) is not entry:
            return loaded.model  # unloaded while it loaded: serve those who waited, keep nothing
        size = entry.bytes = loaded.footprint_bytes
        if size > budget:
            return self._too_large(entry, what, size, budget)
        victims = self._victims(ref, size, budget)
        if victims is None:
            return self._refuse(entry, what, size, budget)
        for key in victims:
            self._evict(key)
        now = self._clock()
        entry.state, entry.reason, entry.model = CacheState.READY, None, loaded.model
        entry.bytes, entry.loaded_at, entry.last_used, entry.failures = size, now, now, 0
        self._now_resident(entry)
        log.info(
            "model ready",
            extra={"model": ref.qualified, "version": ref.version, "bytes": size, "seconds": round(seconds, 4),
                   "evicted": len(victims), **{f"{step}_seconds": round(t, 4) for step, t in loaded.steps.items()}},
        )
        return loaded.model

    # -- fair loading ---------------------------------------------------------------------------------------

    async def _loader_slot(self, tenant: str, weight: float) -> None:
        """Wait until this load may take a loader thread (module docstring: fair loading)."""
        ticket = _LoadTicket(tenant, weight, next(self._load_seq), asyncio.get_running_loop().create_future())
        queue = self._load_queues.get(tenant)
        if queue is None:
            self._load_order.joined(tenant, weight, list(self._load_queues))
            queue = self._load_queues[tenant] = deque()
        queue.append(ticket)
        self._dispatch_loads()
        try:
            await ticket.go
        except asyncio.CancelledError:
            if ticket.go.done() and not ticket.go.cancelled():
                self._release_slot(tenant)  # granted as it was cancelled: hand the slot on
            elif ticket in queue:
                queue.remove(ticket)
                if not queue and self._load_queues.get(tenant) is queue:
                    del self._load_queues[tenant]
                    self._load_order.left(tenant)
            raise

    def _release_slot(self, tenant: str) -> None:
        self._free_loaders += 1
        self._loading.discard(tenant)
        self._dispatch_loads()

    def _dispatch_loads(self) -> None:
        while self._free_loaders > 0:
            heads = {
                tenant: Head(tenant, queue[0].weight, queue[0].seq, len(queue))
                for tenant, queue in self._load_queues.items()
                if tenant not in self._loading
            }
            if not heads:
                return
            tenant = self._load_order.pick(heads)
            queue = self._load_queues[tenant]
            ticket = queue.popleft()
            if not queue:
                del self._load_queues[tenant]
                self._load_order.left(tenant)
            if ticket.go.done():  # its load was cancelled (closing) before it got here
                continue
            self._free_loaders -= 1
            self._loading.add(tenant)
            ticket.go.set_result(None)

    # -- residency and eviction -------------------------------------------------------------------------

    def _now_resident(self, entry: _Entry) -> None:
        owner = entry.ref.owner
        self._resident.setdefault(owner, {})[entry.ref.key] = entry
        self._resident_bytes[owner] = self._resident_bytes.get(owner, 0) + entry.bytes

    def _not_resident(self, entry: _Entry) -> None:
        owner = entry.ref.owner
        models = self._resident.get(owner)
        if models is None or models.pop(entry.ref.key, None) is not entry:
            return
        if models:
            self._resident_bytes[owner] -= entry.bytes
        else:
            del self._resident[owner]
            del self._resident_bytes[owner]

    def _victims(self, ref: OwnModelRef, need: int, budget: int) -> list[OwnModelKey] | None:
        now = self._clock()
        resident = [
            Resident(key, e.bytes, e.loaded_at, e.last_used)
            for models in self._resident.values()
            for key, e in models.items()
        ]
        demand = {t: w for t, (seen, w) in self._demand.items() if now - seen <= self.demand_window_s}
        demand.setdefault(ref.owner, 1.0)
        return choose_victims(resident, demand, ref.owner, need, budget, now, self.min_residency_s)

    def _refuse(self, entry: _Entry, what: str, size: int, budget: int) -> Model:
        self._not_resident(entry)
        entry.state = CacheState.EVICTED
        entry.reason = (
            f"{what} ({_size(size)}) does not fit: the cache budget of {_size(budget)} is held by models "
            f"younger than {self.min_residency_s:g}s or by tenants within their share"
        )
        raise ModelUnavailableError(entry.reason, max(self.min_residency_s / 2, 1.0))

    def _too_large(self, entry: _Entry, what: str, size: int, budget: int) -> Model:
        self._fail(
            entry,
            f"{what} needs {_size(size)} resident (measured), more than the whole cache budget of "
            f"{_size(budget)}",
        )
        raise ModelUnavailableError(entry.reason or "", entry.retry_at - self._clock())

    def _evict(self, key: OwnModelKey) -> None:
        entry = self._entries[key]
        self._not_resident(entry)
        entry.state, entry.model, entry.reason = CacheState.EVICTED, None, "evicted to make room"
        self._events.cache_eviction(key.owner)
        log.info("model evicted", extra={"model": key.qualified, "version": key.version, "bytes": entry.bytes})

    def _fail(self, entry: _Entry, reason: str) -> None:
        entry.failures += 1
        backoff = min(self._backoff_s * 2 ** (entry.failures - 1), self._max_backoff_s)
        self._not_resident(entry)
        entry.state, entry.reason, entry.model = CacheState.FAILED, reason, None
        entry.retry_at = self._clock() + backoff

    def _account(self, entry: _Entry, seconds: float, weight: float, *, ok: bool) -> None:
        entry.load_seconds += seconds
        self._load_order.charge(entry.ref.owner, weight, seconds)
        self._events.cache_load(entry.ref.owner, seconds, ok)
        if self._charge is not None:
            self._charge(entry.ref.owner, seconds, weight)

    def _forget_old_records(self) -> None:
        if len(self._entries) <= _MAX_RECORDS:
            return
        gone = [k for k, e in self._entries.items() if e.state is CacheState.EVICTED and e.pending is None]
        gone.sort(key=lambda k: self._entries[k].last_used)
        for key in gone[: len(self._entries) - _RECORDS_AFTER_SWEEP]:
            del self._entries[key]


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < MIB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / MIB:.1f} MiB" if size < 10 * MIB else f"{math.ceil(size / MIB)} MiB"


__all__ = [
    "CacheEvents",
    "CacheState",
    "IndexRow",
    "ModelCache",
    "ModelUnavailableError",
    "Resident",
    "choose_victims",
]
