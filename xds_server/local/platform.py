"""`make run`: the whole platform on one machine, from the same config and code a cluster runs.

Control plane and runtimes are child processes (restartable on their own, as in production);
Envoy runs from the official binary with a bootstrap that only points at the xDS server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.cells.layout import local_port
from xds_server.compiler import naming
from xds_server.compiler.endpoints import EndpointDirectory
from xds_server.config import load_config
from xds_server.config.errors import ConfigError, Problem
from xds_server.config.model import PlatformConfig, RateLimitBackend
from xds_server.envoy.bootstrap import bootstrap
from xds_server.envoy.process import EnvoyError, EnvoyProcess
from xds_server.local.certs import LocalPki
from xds_server.local.keys import ensure_tenant_keys
from xds_server.local.layout import (
    FRONT,
    GatewaySpec,
    ReplicaSpec,
    cell_gateway_endpoints,
    endpoint_directory,
    plan_gateways,
    plan_replicas,
    port_clashes,
    region_cells,
    replica_count,
)
from xds_server.local.processes import Child, Supervisor, free_port, wait_http
from xds_server.ratelimit.local_redis import RedisServer

log = logging.getLogger("fairshare.local")

_EXAMPLE_BODY = '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["hello"]}]}'


@dataclass(frozen=True)
class PlatformOptions:
    config_dir: Path
    state_dir: Path
    xds_port: int = 18000
    status_port: int = 18001
    host: str = "127.0.0.1"
    delta_xds: bool = True
    startup_timeout: float = 180.0
    # Extra command-line flags for every runtime replica (e.g. --scheduler fifo, --batch m:8).
    runtime_args: tuple[str, ...] = ()
    # Extra environment for every runtime replica, as (name, value) pairs.
    runtime_env: tuple[tuple[str, str], ...] = ()
    # Gateways beyond the first in a region share its port (SO_REUSEPORT: the kernel spreads connections
    # over them, as a load balancer would over replicas); they share rate limits through the service.
    gateways_per_region: int = 1
    # In a region with cells (regions.yaml `cells`): gateways_per_region front-tier Envoys on its port, and
    # this many Envoys per cell, each cell on its own local port (xds_server.cells.layout.local_port).
    gateways_per_cell: int = 1
    ratelimit_port: int | None = None  # the rate-limit service's port; None: a free one
    ratelimit_redis_url: str | None = None  # counters in this Redis instead of the control plane's memory
    # Control-plane replicas on the same config (None: platform.yaml controlplane.replicas, else one); every
    # Envoy's xDS cluster lists them all. More than one counts rate limits in Redis (a local redis-server
    # when no URL is given) behind one shared rate-limit port, so every replica compiles the same snapshot.
    control_planes: int | None = None
    # The control plane's endpoint-source flags instead of `--endpoints <run>/endpoints.yaml` (e.g. a test's
    # `--endpoints-from kubernetes --kubeconfig PATH`, whose replicas it publishes itself).
    endpoint_args: tuple[str, ...] | None = None


@dataclass
class LocalPlatform:
    opts: PlatformOptions
    supervisor: Supervisor = field(default_factory=Supervisor)
    envoys: dict[str, EnvoyProcess] = field(default_factory=dict)
    replicas: list[ReplicaSpec] = field(default_factory=list)
    config: PlatformConfig | None = None
    ratelimit_port: int = 0
    # Mutual TLS between the gateways and the runtimes (platform.gateway.upstream_tls): the local CA.
    pki: LocalPki | None = None
    # Each replica's plaintext health port, when its data-plane port needs the gateway's certificate.
    health_ports: dict[str, int] = field(default_factory=dict)
    # Each control plane's (xDS, status) ports; the first is opts' (what `fairshare status` reads).
    control_plane_ports: list[tuple[int, int]] = field(default_factory=list)
    redis: RedisServer | None = None  # started here for several control planes without a Redis URL
    redis_url: str | None = None
    keys_dir: Path = Path()  # the tenants' pseudonymisation key files (set by start)

    @property
    def run_dir(self) -> Path:
        return self.opts.state_dir / "run"

    @property
    def endpoints_file(self) -> Path:
        return self.run_dir / "endpoints.yaml"

    @property
    def status_url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.status_port}/status"

    def status(self) -> dict[str, Any]:
        """The control plane's status page: config version, last reload, each Envoy's ACKs and NACKs."""
        with urllib.request.urlopen(self.status_url, timeout=5) as resp:
            return dict(json.load(resp))

    def served_by(self) -> dict[str, str | None]:
        """Request id (the gateway's x-request-id on each response) -> the replica that answered it
        (`region/pool/replica`), None for a gateway's own answer: from every Envoy's access log, where the
        gateway moves the runtime's x-fairshare-replica instead of showing it to clients
        (compiler/listener.py). A line is there once Envoy flushes its log file, within a second or so."""
        out: dict[str, str | None] = {}
        for path in self.run_dir.rglob("envoy-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{") or '"request_id"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                request_id, replica = entry.get("request_id"), entry.get("replica")
                if isinstance(request_id, str):
                    # A front tier's line has no replica and its cell's has: keep the cell's.
                    out[request_id] = replica if isinstance(replica, str) else out.get(request_id)
        return out

    def gateway_url(self, region: str) -> str:
        """The region's public entry: its gateway, or in a region with cells its front tier."""
        assert self.config is not None
        return f"http://{self.opts.host}:{self.config.regions[region].gateway_port}"

    def cell_url(self, region: str, cell: str) -> str:
        """One cell's gateways directly (locally only: in a cluster only the front tier reaches them)."""
        assert self.config is not None
        cells = region_cells(self.config, region)
        if cell not in cells:
            raise ValueError(f"region {region} has no cell {cell!r}; its cells: {', '.join(cells) or 'none'}")
        return f"http://{self.opts.host}:{local_port(self.config.regions[region], cells.index(cell))}"

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        self.config = load_config(self.opts.config_dir)  # fail fast, with every problem, before starting
        gateways = plan_gateways(self.config, self.opts.gateways_per_region, self.opts.gateways_per_cell)
        clashes = port_clashes(gateways, {self.opts.xds_port: "the control plane's xDS port (--xds-port)",
                                          self.opts.status_port: "its status port (--status-port)"})
        if clashes:
            regions = str(self.opts.config_dir / "regions.yaml")
            raise ConfigError([Problem(regions, f"{region}.gateway_port", why) for region, why in clashes])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Each tenant's pseudonymisation key (what Secrets Manager holds in a region), kept across runs.
        self.keys_dir = ensure_tenant_keys(self.opts.state_dir, self.config.tenants)
        self.ratelimit_port = self.opts.ratelimit_port or free_port()
        count = replica_count(self.config)
        self.replicas = plan_replicas(self.config, [free_port() for _ in range(count)],
                                      [free_port() for _ in range(count)])
        runtimes = endpoint_directory(self.replicas, self.opts.host)
        # The cells' gateways too, as pools `gateway.<cell>`: the front tier's clusters are EDS over them.
        EndpointDirectory({**runtimes.by_pool, **cell_gateway_endpoints(self.config, self.opts.host)}).dump(
            self.endpoints_file)
        if self.config.platform.gateway.upstream_tls.enabled:
            self.pki = LocalPki.ensure(self.opts.state_dir)
            self.health_ports = {r.name: free_port() for r in self.replicas}
        planes = self.opts.control_planes or self.config.platform.controlplane.replicas or 1
        self.control_plane_ports = [(self.opts.xds_port, self.opts.status_port)]
        self.control_plane_ports += [(free_port(), free_port()) for _ in range(planes - 1)]
        self.redis_url = self.opts.ratelimit_redis_url
        try:
            in_memory = self.config.platform.ratelimit.backend is RateLimitBackend.MEMORY
            if planes > 1 and self.redis_url is None and in_memory:
                self.redis = RedisServer(self.run_dir / "redis").start()
                self.redis_url = self.redis.url
            for replica in self.replicas:
                self._start_replica(replica)
            # One after the other: the first creates the signing key in the state dir, the others read it.
            for index in range(planes):
                self.start_control_plane(index)
            # Cells before their front tier, so the front's first request finds its cells serving.
            for gw in sorted(gateways, key=lambda g: g.cell == FRONT):
                self.start_envoy(gw.region, gw.replica, cell=gw.cell)
            for replica in self.replicas:
                self._wait_replica(replica)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # Front tiers first: their HTTP/2 connections to the cells would hold every cell's drain open to its
        # end. Within a tier drained together, so stopping costs one drain time, not one per gateway; a
        # gateway that cannot drain (dead, or never up) is stopped all the same.
        fronts = [e for key, e in self.envoys.items() if key.split("#")[0].endswith(f"/{FRONT}")]
        for tier in (fronts, [e for e in self.envoys.values() if e not in fronts]):
            self._drain_and_stop(tier)
        self.envoys.clear()
        self.supervisor.stop_all()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    @staticmethod
    def _drain_and_stop(envoys: list[EnvoyProcess]) -> None:
        draining = []
        for envoy in envoys:
            try:
                envoy.begin_drain()
                draining.append(envoy)
            except EnvoyError as err:
                log.warning("not draining %s: %s", envoy.name, err)
        for envoy in draining:
            with contextlib.suppress(EnvoyError):
                envoy.wait_drained(envoy.drain_time_s + 0.5)
        for envoy in envoys:
            envoy.stop()

    @property
    def _control_plane_tls(self) -> bool:
        """xDS and the rate-limit service over mutual TLS (platform.gateway.upstream_tls.control_plane)."""
        return self.pki is not None and self.config is not None and \
            self.config.platform.gateway.upstream_tls.to_control_plane

    @staticmethod
    def control_plane_name(index: int = 0) -> str:
        return "control-plane" if index == 0 else f"control-plane-{index + 1}"

    def start_control_plane(self, index: int = 0) -> None:
        xds_port, status_port = self.control_plane_ports[index]
        name = self.control_plane_name(index)
        child = self.supervisor.start(Child(
            name=name,
            argv=[sys.executable, "-m", "xds_server", "serve",
                  "--config", str(self.opts.config_dir), "--state", str(self.opts.state_dir),
                  *(self.opts.endpoint_args if self.opts.endpoint_args is not None
                    else ("--endpoints", str(self.endpoints_file))), "--host", self.opts.host,
                  "--xds-port", str(xds_port), "--status-port", str(status_port),
                  "--listen-address", self.opts.host, "--ratelimit-port", str(self.ratelimit_port),
                  *(["--ratelimit-shared-port"] if len(self.control_plane_ports) > 1 else []),
                  # Each asks the others about moves between cells (xds_server/cells/peers.py).
                  *(["--peers", ",".join(f"{self.opts.host}:{port}" for _, port in self.control_plane_ports)]
                    if len(self.control_plane_ports) > 1 else []),
                  *(["--ratelimit-redis-url", self.redis_url] if self.redis_url else []),
                  *(["--upstream-tls-dir", str(self.pki.sds_dir)] if self.pki else []),
                  *(["--tls-dir", str(self.pki.controlplane_dir)] if self.pki and self._control_plane_tls else []),
                  # Every cell here is a process on this host, not pods of its own: each listens on its port.
                  *(["--local-cell-ports"] if self._has_cells else [])],
            log_file=self.run_dir / f"{name}.log",
        ))
        wait_http(f"http://{self.opts.host}:{status_port}/healthz", 60, proc=child.proc,
                  log_file=child.log_file)

    def stop_control_plane(self, index: int = 0) -> None:
        self.supervisor.stop(self.control_plane_name(index))

    def control_plane_status(self, index: int) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.opts.host}:{self.control_plane_ports[index][1]}/status",
                                    timeout=5) as resp:
            return dict(json.load(resp))

    def _live_statuses(self) -> list[dict[str, Any]]:
        """Every running control plane's status (an Envoy is connected to one of them)."""
        return [self.control_plane_status(i) for i in range(len(self.control_plane_ports))
                if (child := self.supervisor.children.get(self.control_plane_name(i))) and child.alive()]

    @property
    def _has_cells(self) -> bool:
        return self.config is not None and any(region_cells(self.config, r) for r in self.config.regions)

    def start_envoy(self, region: str, replica: int = 0, *, cell: str | None = None) -> EnvoyProcess:
        """The region's gateway; `replica` n > 0 is another one on the same port, `envoys[f"{region}#{n+1}"]`.
        In a region with cells, `cell` names the cell (its Envoys are `envoys[f"{region}/{cell}"]`); left out,
        it is the front tier (`envoys[f"{region}/front"]`), the region's public entry."""
        admin_port = free_port()
        assert self.config is not None
        stats = None if self.config.platform.gateway.per_tenant_cluster_stats else naming.tenant_cluster_stats_off()
        cells = region_cells(self.config, region)
        if cell is None and cells:
            cell = FRONT
        if cell is not None and cell != FRONT and cell not in cells:
            raise ValueError(f"region {region} has no cell {cell!r}; its cells: {', '.join(cells) or 'none'}")
        gw = GatewaySpec(region, cell, replica, 0)
        key, node_id = gw.key, gw.node_id
        boot = bootstrap(node_id=node_id, region=region, xds_host=self.opts.host,
                         xds_port=self.opts.xds_port, admin_port=admin_port, delta=self.opts.delta_xds,
                         stats_matcher=stats,
                         more_xds=[(self.opts.host, xds) for xds, _ in self.control_plane_ports[1:]],
                         xds_tls_dir=str(self.pki.sds_dir) if self.pki and self._control_plane_tls else None,
                         cell=cell)
        name = f"envoy-{key.replace('#', '-').replace('/', '-')}"
        envoy = EnvoyProcess(boot, self.run_dir / name, name=name)
        envoy.start()
        self.envoys[key] = envoy
        envoy.wait_ready(60)
        self._wait_applied(node_id, gw.snapshot, timeout=60)
        return envoy

    def _wait_applied(self, node_id: str, snapshot: str, timeout: float) -> None:
        """Until the control plane reports the node runs its snapshot (its region's, or in a region with cells
        `<region>/<cell>`). Envoy refuses some config only at apply time (a gateway port already in use): say
        so rather than claim to run."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = [s["xds"] for s in self._live_statuses()] or [self.status()["xds"]]
            xds = next((x for x in statuses if (x["nodes"].get(node_id) or {}).get("connected")), statuses[0])
            node = xds["nodes"].get(node_id) or {}
            published = (xds["regions"].get(snapshot) or {}).get("version")
            nack = node.get("last_nack")
            if nack and nack["version"] == published:
                raise RuntimeError(f"Envoy for {snapshot} rejected its config: {nack['message']}")
            if published is not None and node.get("connected") and node.get("applied_version") == published:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Envoy for {snapshot} did not apply config version {published} in {timeout:.0f}s")
            time.sleep(0.1)

    def restart_replicas(self, runtime_args: tuple[str, ...]) -> None:
        """Restart every runtime replica with other flags, on the same ports (so Envoy's endpoints stay
        valid), and wait until each is ready again."""
        self.opts = dataclasses.replace(self.opts, runtime_args=runtime_args)
        for replica in self.replicas:
            self.supervisor.stop(replica.name)
            self._start_replica(replica)
        for replica in self.replicas:
            self._wait_replica(replica)

    def _wait_replica(self, replica: ReplicaSpec) -> None:
        child = self.supervisor.children[replica.name]
        port = self.health_ports.get(replica.name, replica.port)
        wait_http(f"http://{self.opts.host}:{port}/v2/health/ready", self.opts.startup_timeout,
                  proc=child.proc, log_file=child.log_file)

    def stop_envoy(self, region: str, *, drain: bool = False) -> None:
        """Stop that gateway (`region` or `region#n`); `drain`: drain it first, as a pod's preStop does."""
        envoy = self.envoys.pop(region, None)
        if envoy:
            if drain:
                envoy.drain()
            envoy.stop()

    def _start_replica(self, replica: ReplicaSpec) -> None:
        argv = [sys.executable, "-m", "inference_images.runtime", "--region", replica.region,
                "--pool", replica.pool, "--host", self.opts.host, "--port", str(replica.port),
                "--replica", f"{replica.region}/{replica.pool}/{replica.replica}",
                "--pseudonymisation-keys", f"file:{self.keys_dir}"]
        for model in replica.models:
            argv += model.args()
        if replica.admin_port is not None:
            argv += ["--admin-port", str(replica.admin_port)]
        if replica.cache_budget_mb is not None:
            argv += ["--cache-budget-mb", str(replica.cache_budget_mb)]
        if self.pki is not None:
            argv += ["--tls-dir", str(self.pki.runtime_dir), "--health-port", str(self.health_ports[replica.name])]
        argv += self.opts.runtime_args
        self.supervisor.start(Child(
            name=replica.name, argv=argv, log_file=self.run_dir / f"{replica.name}.log",
            # One intra-op thread per replica: several replicas share few cores, and oversubscribed
            # torch threads cost more than they give.
            env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                 **dict(self.opts.runtime_env)},
        ))

    # -- foreground ------------------------------------------------------------------------------------

    def run_foreground(self) -> int:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print("starting Fairshare (control plane, runtimes, gateways)...", flush=True)
        try:
            self.start()
        except ConfigError as err:  # the config's own problems, as `fairshare validate` prints them
            print(err.render(), file=sys.stderr)
            return 2
        except Exception as err:
            print(f"error: platform failed to start: {err}", file=sys.stderr)
            return 1
        assert self.config is not None
        print(self.banner(), flush=True)
        try:
            while not stop.wait(1.0):
                dead = [c.name for c in self.supervisor.children.values() if not c.alive()]
                dead += [f"envoy-{r}" for r, e in self.envoys.items() if not e.running]
                if dead:
                    print(f"error: {', '.join(dead)} exited; stopping (logs in {self.run_dir})", file=sys.stderr)
                    return 1
        finally:
            print("stopping every process...", flush=True)
            self.stop()
            print("stopped.", flush=True)
        return 0

    def banner(self) -> str:
        assert self.config is not None
        lines = ["", "Fairshare is running.", ""]
        for region in self.config.regions:
            cells = region_cells(self.config, region)
            lines.append(f"  gateway {region:<12} {self.gateway_url(region)}" + ("  (front tier)" if cells else ""))
            lines += [f"    cell {cell:<13} {self.cell_url(region, cell)}" for cell in cells]
        lines += [f"  control plane status  {self.status_url}", f"  logs                  {self.run_dir}", "",
                  "Credentials (tokens expire; run again for a fresh one):"]
        flags = f" --config {self.opts.config_dir}" if str(self.opts.config_dir) != "config" else ""
        flags += f" --state {self.opts.state_dir}" if str(self.opts.state_dir) != ".fairshare" else ""
        for tenant in sorted(self.config.tenants):
            lines.append(f"  {tenant:<10} $(.venv/bin/fairshare token {tenant}{flags})")
        first_region = next(iter(self.config.regions))
        lines += ["", "Try:",
                  f'  curl -H "Authorization: Bearer $(.venv/bin/fairshare token acme{flags})" \\',
                  "       -d '" + _EXAMPLE_BODY + "' \\",
                  f"       {self.gateway_url(first_region)}/v2/models/embedder/infer",
                  "", "Ctrl-C stops every process."]
        return "\n".join(lines)


