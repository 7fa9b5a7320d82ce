"""The cells benchmarks' rig: a real ControlPlane (cells on local ports, Envoy validation on) on a fresh xDS
server, and one Envoy per snapshot the bench chooses to run (a cell's, the front's, or the region's
single one), each applying only what its node metadata selects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cells_config import REGION
from xds_server.auth.keys import SigningKey
from xds_server.cells.keys import FRONT, snapshot_key
from xds_server.compiler import Compiler, naming
from xds_server.controlplane.service import ControlPlane
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyProcess, find_envoy
from xds_server.envoy.validate import EnvoyValidator
from xds_server.snapshot import ROUTE
from xds_server.xds.server import XdsServer
from xds_server.xds.store import SnapshotStore


def key_of(cell: str | None) -> str:
    return snapshot_key(REGION, cell)


@dataclass
class Memory:
    allocated: int  # Envoy's allocator (admin /memory)
    rss: int


@dataclass
class CellsRig:
    root: Path
    endpoints_file: Path
    key: SigningKey
    store: SnapshotStore = field(default_factory=SnapshotStore)
    xds: XdsServer | None = None
    cp: ControlPlane | None = None
    envoys: dict[str, EnvoyProcess] = field(default_factory=dict)  # snapshot key -> its Envoy
    _watch: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, config_dir: Path, cells: Iterable[str | None]) -> float:
        """The control plane's first load of `config_dir` (timed: load + policy + compile + publish), then an
        Envoy per cell (None: the region's single snapshot), each waited on until it applied its snapshot."""
        self.xds = XdsServer(self.store, "127.0.0.1", 0)
        await self.xds.start()
        self.cp = ControlPlane(config_dir, self.endpoints_file, self.key.jwks(), self.store, "127.0.0.1",
                               validator=EnvoyValidator(find_envoy()), compiler=Compiler(local_cell_ports=True))
        t0 = time.perf_counter()
        outcome = self.cp.reload()
        if not outcome.ok:
            raise RuntimeError(outcome.error)
        build_s = time.perf_counter() - t0
        for cell in cells:
            await self.start_envoy(cell)
        # The config watch, the endpoints' and the moves' followers, as `fairshare serve` runs them.
        self._watch = asyncio.create_task(self.cp.watch(self._stop))
        await asyncio.sleep(0.5)  # the watch is armed
        return build_s

    async def start_envoy(self, cell: str | None) -> float:
        """Start the Envoy of `cell` and wait until it applied its snapshot: seconds from start to applied."""
        key = key_of(cell)
        t0 = time.perf_counter()
        envoy = self.launch_envoy(cell)
        await self.store.wait_applied(key, self.version(key), timeout=300)
        applied_s = time.perf_counter() - t0
        await asyncio.to_thread(envoy.wait_ready, 60)
        return applied_s

    async def quiet(self, timeout_s: float = 60.0) -> None:
        """Wait until every running Envoy is idle. An Envoy that has ACKed goes on building its workers'
        copies of what it applied for a while; the next Envoy, timed "alone", must not share the cores with it."""
        pids = [e.pid for e in self.envoys.values() if e.pid is not None]
        deadline = time.monotonic() + timeout_s
        before = _cpu_ticks(pids)
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIET_WINDOW_S)
            now = _cpu_ticks(pids)
            if now - before <= QUIET_TICKS:
                return
            before = now

    def launch_envoy(self, cell: str | None) -> EnvoyProcess:
        """Start the Envoy of `cell` without waiting (a cell not yet in the config: it waits for its snapshot)."""
        assert self.xds is not None
        key = key_of(cell)
        boot = bootstrap(f"bench-{key.replace('/', '-')}", REGION, "127.0.0.1", self.xds.bound_port, 0, delta=True,
                         stats_matcher=naming.tenant_cluster_stats_off(), cell=cell)
        envoy = EnvoyProcess(boot, self.root / f"envoy-{key.replace('/', '-')}-{time.monotonic_ns()}",
                             name=key, concurrency=2, log_level="warning")
        envoy.start()
        self.envoys[key] = envoy
        return envoy

    def stop_envoy(self, cell: str | None) -> None:
        envoy = self.envoys.pop(key_of(cell), None)
        if envoy is not None:
            envoy.stop()

    def version(self, key: str) -> str:
        published = self.store.published(key)
        assert published is not None, f"nothing published for {key}"
        return published.snapshot.version

    def holds(self, cell: str | None, tenant: str) -> bool:
        snapshot = self.store.get(key_of(cell))
        return snapshot is not None and naming.tenant_routes(tenant) in snapshot.of_type(ROUTE)

    def front_table(self) -> dict[str, str]:
        assert self.cp is not None
        return self.cp.moves.views_front(REGION)

    async def memory(self, cell: str | None) -> Memory:
        await asyncio.sleep(1.0)  # let the workers settle after applying
        envoy = self.envoys[key_of(cell)]
        assert envoy.pid is not None
        status = Path(f"/proc/{envoy.pid}/status").read_text()
        rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
        return Memory(await asyncio.to_thread(envoy.memory_bytes), rss)

    async def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for envoy in self.envoys.values():
            envoy.stop()
        self.envoys.clear()
        if self.xds is not None:
            await self.xds.stop(0)
            self.xds = None  # stopped once: a second stop (the layout's close after a bench's) has nothing to do
        self.cp = None  # its config and snapshots: gigabytes at 100,000 tenants
        self.store = SnapshotStore()


FRONT_KEY = key_of(FRONT)
# Idle: the running Envoys together used at most QUIET_TICKS clock ticks (1/100 s each) of CPU in a window.
QUIET_WINDOW_S, QUIET_TICKS = 0.25, 1


def _cpu_ticks(pids: list[int]) -> int:
    """User + system CPU ticks the processes `pids` have used (one that is gone counts nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total
