"""Trace-driven simulation of the own-model cache on a pool of replicas, run on the real eviction code.

The issue's scale (10,000 models of 20 KB-20 MB, ~29 GB of artefacts) does not fit one small machine, so
the hit-rate figures come from here: each replica is a real ``ModelCache`` (the runtime's class, its
``choose_victims`` rule, single flight, minimum residency, demand window) fed with synthetic sized
entries through its ``loader`` seam and driven on a virtual clock through its ``clock`` seam. What is
modelled, not real: the bytes (a loader that returns a stub of the model's size at once) and the time a
request holds a replica (``Service``), which only Envoy's bounded-load and least-request choices read.

Routing is Envoy's, re-implemented from its source (``source/extensions/load_balancing_policies``):

- ``RingHash``: xxHash64 of ``"<ip:port>_<i>"`` per virtual node, ``minimum_ring_size`` entries in all,
  a request's hash ``rotl(h(tenant), 1) ^ h(model)`` (the route's two hash policies, in order: the tenant
  header and the model name from ``:path``), the first ring entry at or past it; bounded load with
  ``hash_balance_factor`` 150 exactly as ``isHostOverloaded`` counts slots (with 2 hosts the other host
  is the only probe);
- ``least_request``: Envoy's power of two choices (two uniform picks, the one with fewer requests
  active, the first on a tie).

Baselines on the same trace: least-request into the same caches; a plain byte-budget LRU under the same
hash routing (what the fair rule costs in hit rate); and an offline oracle per replica on exactly the
requests that replica saw (``belady``).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import heapq
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from inference_images.runtime.models.artifacts import ArtifactRef
from inference_images.runtime.models.base import Model
from inference_images.runtime.models.cache import CacheState, ModelCache, ModelUnavailableError
from inference_images.runtime.models.own import LoadedModel, OwnModelRef

# -- xxHash64, as Envoy's HashUtil::xxHash64 (seed 0) -----------------------------------------------------

_M = (1 << 64) - 1
_P1, _P2, _P3 = 11400714785074694791, 14029467366897019727, 1609587929392839161
_P4, _P5 = 9650029242287828579, 2870177450012600261


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """The reference XXH64 (pure Python; the ring and a few hundred thousand keys need no more)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 32 <= n:
            for j in range(4):
                v[j] = _round(v[j], int.from_bytes(data[i + 8 * j:i + 8 * j + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for lane in v:
            h = ((h ^ _round(0, lane)) * _P1 + _P4) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h ^= _round(0, int.from_bytes(data[i:i + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def request_hash(tenant: str, model: str) -> int:
    """The route's hash: the tenant header's, rotated, xor the model name's (HashPolicyImpl::generateHash)."""
    first = xxh64(tenant.encode())
    return _rotl(first, 1) ^ xxh64(model.encode())


class RingHash:
    """Envoy's RingHashLoadBalancer over equally weighted hosts named by their address (``ip:port``)."""

    def __init__(self, hosts: Sequence[str], minimum_ring_size: int = 1024) -> None:
        self.hosts = list(hosts)
        weight = 1.0 / len(self.hosts)
        scale = min(math.ceil(weight * minimum_ring_size) / weight, 8 * 1024 * 1024)
        ring: list[tuple[int, int]] = []
        current = target = 0.0
        for index, host in enumerate(self.hosts):
            target += scale * weight
            i = 0
            while current < target:
                ring.append((xxh64(f"{host}_{i}".encode()), index))
                i += 1
                current += 1
        ring.sort()
        self._hashes = [h for h, _ in ring]
        self._owners = [o for _, o in ring]

    def pick(self, h: int) -> int:
        at = bisect.bisect_left(self._hashes, h)
        return self._owners[at if at < len(self._hashes) else 0]


def overloaded(host_active: int, overall_active: int, hosts: int, balance_factor: int = 150) -> bool:
    """BoundedLoadHashingLoadBalancer::isHostOverloaded for equally weighted hosts."""
    total_slots = ((overall_active + 1) * balance_factor + 99) // 100
    slots = max(math.ceil(total_slots / hosts), 1)
    return host_active > slots


# -- the workload --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    sizes: np.ndarray  # bytes, per model
    owners: np.ndarray  # tenant index, per model
    weights: np.ndarray  # per tenant (the tier weight the gateway would send)
    times: np.ndarray  # arrival times, seconds
    models: np.ndarray  # model index, per request

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())

    def tenant(self, t: int) -> str:
        return f"t{t:05d}"

    def model(self, m: int) -> str:
        return f"m{m:05d}"


def workload(models: int = 10_000, tenants: int = 1_000, requests: int = 200_000, rate: float = 100.0,
             zipf_s: float = 1.1, min_bytes: int = 20_000, max_bytes: int = 20_000_000,
             seed: int = 11) -> Workload:
    """Sizes log-uniform in [min_bytes, max_bytes], ``models / tenants`` models per tenant, popularity
    Zipf(``zipf_s``) over models in a random order (independent of size and owner), Poisson arrivals."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(math.log(min_bytes), math.log(max_bytes), models)).astype(np.int64)
    owners = np.arange(models) % tenants
    weights = np.array([(4.0, 2.0, 1.0)[t % 3] for t in range(tenants)])  # enterprise, pro, free (synth.TIERS)
    ranks = np.arange(1, models + 1, dtype=float) ** -zipf_s
    popularity = np.empty(models)
    popularity[rng.permutation(models)] = ranks / ranks.sum()
    drawn = rng.choice(models, size=requests, p=popularity)
    times = np.cumsum(rng.exponential(1.0 / rate, requests))
    return Workload(sizes, owners, weights, times, drawn)


@dataclass(frozen=True)
class Service:
    """How long a request holds its replica (read only by the load balancers' active-request counts):
    the forward pass, plus the load on a miss (``load_s + size / load_bytes_per_s``, fitted to the
    real cold loads of the same run when they ran)."""

    hit_s: float = 0.005
    load_s: float = 0.02
    load_bytes_per_s: float = 150e6

    def seconds(self, hit: bool, size: int) -> float:
        return self.hit_s if hit else self.hit_s + self.load_s + size / self.load_bytes_per_s


# -- the real cache, on a virtual clock ------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Stub:
    """What a synthetic load leaves resident: nothing but its declared footprint."""

    platform = "simulated"


@dataclass
class Replica:
    cache: ModelCache
    active: list[float] = field(default_factory=list)  # completion times of requests in flight
    hits: int = 0
    requests: int = 0
    refused: int = 0
    served: list[int] = field(default_factory=list)  # request indices this replica saw (for the oracle)

    def settle(self, now: float) -> int:
        while self.active and self.active[0] <= now:
            heapq.heappop(self.active)
        return len(self.active)


@dataclass
class SimResult:
    routing: str
    budget_bytes: int
    hit_rate: float  # over the measured half
    hit_rate_by_replica: list[float]
    refused: int
    evictions: int
    fill: float  # resident bytes / budget, mean over the measured half's samples
    spilled: int  # requests the bounded load sent off their ring choice
    per_replica_requests: list[list[int]]  # request indices by replica (the whole trace)

    def summary(self) -> dict[str, Any]:
        return {"routing": self.routing, "budget_bytes": self.budget_bytes, "hit_rate": self.hit_rate,
                "hit_rate_by_replica": self.hit_rate_by_replica, "refused_loads": self.refused,
                "evictions": self.evictions, "resident_fill": self.fill, "spilled_by_bounded_load": self.spilled}


def _refs(w: Workload) -> list[OwnModelRef]:
    out = []
    for m in range(len(w.sizes)):
        digest = hashlib.sha256(str(m).encode()).hexdigest()
        artifact = ArtifactRef(f"s3://bench-models/tenants/{w.tenant(int(w.owners[m]))}/{w.model(m)}/1/model.onnx",
                               digest)
        out.append(OwnModelRef(w.tenant(int(w.owners[m])), w.model(m), "1", "onnx", artifact))
    return out


def simulate(w: Workload, routing: str, budget_bytes: int, replicas: int = 2, service: Service | None = None,
             warm_fraction: float = 0.5, seed: int = 1,
             progress: Callable[[str], None] | None = None) -> SimResult:
    """Play the trace through ``replicas`` real caches routed by ``hash`` or ``least_request``."""
    return asyncio.run(_simulate(w, routing, budget_bytes, replicas, service or Service(), warm_fraction, seed,
                                 progress))


async def _simulate(w: Workload, routing: str, budget_bytes: int, replicas: int, service: Service,
                    warm_fraction: float, seed: int, progress: Callable[[str], None] | None) -> SimResult:
    if routing not in ("hash", "least_request"):
        raise ValueError(f"routing {routing!r}: expected 'hash' or 'least_request'")
    clock = VirtualClock()
    sizes = [int(s) for s in w.sizes]
    refs = _refs(w)
    index = {ref.key: m for m, ref in enumerate(refs)}
    evictions = [0]

    class Events:
        def cache_hit(self, tenant: str) -> None: ...
        def cache_miss(self, tenant: str) -> None: ...
        def cache_load(self, tenant: str, seconds: float, ok: bool) -> None: ...

        def cache_eviction(self, tenant: str) -> None:
            evictions[0] += 1

    def loader(ref: OwnModelRef) -> LoadedModel:
        return LoadedModel(cast(Model, _Stub()), sizes[index[ref.key]])

    pool = [Replica(ModelCache(loader, budget_bytes=budget_bytes, loader_threads=1, clock=clock, events=Events()))
            for _ in range(replicas)]
    ring = RingHash([f"127.0.0.1:{9000 + i}" for i in range(replicas)])
    hashes = [request_hash(w.tenant(int(w.owners[m])), w.model(m)) for m in range(len(sizes))]
    choice = [ring.pick(h) for h in hashes]
    rng = random.Random(seed)
    start_measure = int(len(w.models) * warm_fraction)
    spilled = 0
    fills: list[float] = []
    models = w.models.tolist()
    times = w.times.tolist()
    for i, (t, m) in enumerate(zip(times, models, strict=True)):
        clock.now = t
        active = [r.settle(t) for r in pool]
        if routing == "hash":
            r = choice[m]
            if overloaded(active[r], sum(active), replicas):
                # The probe order is a random jump over the other hosts; with 2 there is one.
                others = [o for o in range(replicas) if o != r and not overloaded(active[o], sum(active), replicas)]
                if others:
                    r = others[hashes[m] % len(others)]
                    spilled += 1
        else:
            a, b = rng.randrange(replicas), rng.randrange(replicas)
            r = b if active[b] < active[a] else a
        replica = pool[r]
        ref = refs[m]
        state, _ = replica.cache.state(ref)
        hit = state is CacheState.READY
        weight = float(w.weights[int(w.owners[m])])
        try:
            await replica.cache.acquire(ref, weight)
        except ModelUnavailableError:
            if i >= start_measure:
                replica.refused += 1
        heapq.heappush(replica.active, t + service.seconds(hit, sizes[m]))
        replica.served.append(i)
        if i >= start_measure:
            replica.requests += 1
            replica.hits += hit
            if i % 500 == 0:
                fills.append(sum(p.cache.resident_bytes() for p in pool) / (budget_bytes * replicas))
        if progress is not None and i and i % 50_000 == 0:
            progress(f"  {routing} @ {budget_bytes / 1e9:.2f} GB: {i:,}/{len(models):,} requests")
    for p in pool:
        await p.cache.close()
    hits = sum(p.hits for p in pool)
    total = sum(p.requests for p in pool)
    return SimResult(routing, budget_bytes, hits / max(total, 1), [p.hits / max(p.requests, 1) for p in pool],
                     sum(p.refused for p in pool), evictions[0], float(np.mean(fills)) if fills else 0.0, spilled,
                     [p.served for p in pool])


# -- baselines on the same per-replica sequences ---------------------------------------------------------


def lru_hits(sequence: Sequence[int], sizes: Sequence[int], budget: int, measure_from: int) -> tuple[int, int]:
    """A plain byte-budget LRU (evict the least recently used until the new model fits): (hits, requests)
    counted from position ``measure_from`` of ``sequence``."""
    cache: OrderedDict[int, int] = OrderedDict()
    used = hits = total = 0
    for pos, m in enumerate(sequence):
        counted = pos >= measure_from
        total += counted
        if m in cache:
            cache.move_to_end(m)
            hits += counted
            continue
        if sizes[m] > budget:
            continue
        while used + sizes[m] > budget:
            _, gone = cache.popitem(last=False)
            used -= gone
        cache[m] = sizes[m]
        used += sizes[m]
    return hits, total


def _next_uses(sequence: Sequence[int]) -> list[float]:
    nxt: list[float] = [math.inf] * len(sequence)
    last: dict[int, int] = {}
    for pos in range(len(sequence) - 1, -1, -1):
        nxt[pos] = last.get(sequence[pos], math.inf)
        last[sequence[pos]] = pos
    return nxt


def belady_hits(sequence: Sequence[int], sizes: Sequence[int], budget: int, measure_from: int = 0,
                variant: str = "min") -> tuple[int, int]:
    """Offline eviction with the whole future known, bypass allowed (a model whose next use is furthest
    is simply not admitted): (hits, requests) from ``measure_from``.

    ``min``: Belady's MIN, evict the model whose next request is furthest away (optimal for equal sizes);
    ``size``: evict the largest ``size x distance to next request`` first (Belady-Size), which favours
    keeping many small models and so scores higher on the request hit rate when sizes vary. Exactly
    optimal caching of variable sizes is NP-hard; the benchmark reports the better of the two."""
    if variant not in ("min", "size"):
        raise ValueError(f"variant {variant!r}: expected 'min' or 'size'")
    nxt = _next_uses(sequence)
    resident: dict[int, float] = {}  # model -> its next use
    used = hits = total = 0
    heap: list[tuple[float, int]] = []  # (-next use, model), lazily stale: the MIN variant's order
    for pos, m in enumerate(sequence):
        counted = pos >= measure_from
        total += counted
        if m in resident:
            hits += counted
            resident[m] = nxt[pos]
            if variant == "min":
                heapq.heappush(heap, (-nxt[pos], m))
            continue
        size = sizes[m]
        if size > budget or nxt[pos] == math.inf:
            continue  # never used again: admitting it cannot help
        if used + size > budget:
            if variant == "min":
                victims = _min_victims(heap, resident, sizes, size, budget - used, nxt[pos])
            else:
                victims = _size_victims(resident, sizes, size, budget - used, nxt[pos], pos)
            if victims is None:
                continue  # bypass: the new model is the one the future needs least
            for v in victims:
                del resident[v]
                used -= sizes[v]
        resident[m] = nxt[pos]
        used += size
        if variant == "min":
            heapq.heappush(heap, (-nxt[pos], m))
    return hits, total


def _min_victims(heap: list[tuple[float, int]], resident: dict[int, float], sizes: Sequence[int], need: int,
                 free: int, new_next: float) -> list[int] | None:
    victims: list[int] = []
    popped: list[tuple[float, int]] = []
    while free < need:
        while heap and resident.get(heap[0][1]) != -heap[0][0]:
            heapq.heappop(heap)  # stale: re-requested (a fresher entry exists) or gone
        if not heap or -heap[0][0] < new_next:
            # What is left is needed before the new model: keep it all, bypass.
            heap.extend(popped)
            heapq.heapify(heap)
            return None
        entry = heapq.heappop(heap)
        popped.append(entry)
        victims.append(entry[1])
        free += sizes[entry[1]]
    return victims


def _size_victims(resident: dict[int, float], sizes: Sequence[int], need: int, free: int, new_next: float,
                  now: int) -> list[int] | None:
    keys = np.fromiter(resident.keys(), dtype=np.int64, count=len(resident))
    nexts = np.fromiter(resident.values(), dtype=float, count=len(resident))
    sz = np.asarray(sizes)[keys]
    score = np.where(np.isinf(nexts), np.inf, sz * (nexts - now))
    order = np.argsort(-score, kind="stable")
    new_score = need * (new_next - now)
    victims: list[int] = []
    for j in order:
        if free >= need:
            break
        if score[j] < new_score:
            return None
        victims.append(int(keys[j]))
        free += int(sz[j])
    return victims if free >= need else None


def oracle_hits(sequence: Sequence[int], sizes: Sequence[int], budget: int, measure_from: int) -> dict[str, int]:
    """Both offline variants on one replica's sequence: hits of each, and the requests counted."""
    h_min, total = belady_hits(sequence, sizes, budget, measure_from, "min")
    h_size, _ = belady_hits(sequence, sizes, budget, measure_from, "size")
    return {"min": h_min, "size": h_size, "requests": total}
