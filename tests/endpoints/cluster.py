"""A pool run the way Kubernetes runs it, for the end-to-end test and the benchmark: real runtimes, a real
Envoy and a control plane started with `--endpoints-from kubernetes`, pointed at the stand-in API server,
where this harness writes the pool's EndpointSlices as the EndpointSlice controller and the kubelet would:
a new replica is listed once it is ready; a replica going away is first marked terminating (still
serving), and only stopped once the gateway drains it, then dropped from the slice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.synth import small_config
from tests.endpoints.apiserver import StandInApiServer, endpoint_slice
from xds_server.auth.keys import SigningKey
from xds_server.auth.tokens import issue_token
from xds_server.compiler import naming
from xds_server.local.layout import ReplicaSpec
from xds_server.local.platform import LocalPlatform, PlatformOptions
from xds_server.local.processes import free_port

REGION, POOL, TENANT = "us-east-1", "cpu", "acme"
DATA_SLICE = "fairshare-pool-cpu"


@dataclass
class KubePool:
    root: Path
    replicas: int = 2
    apiserver: StandInApiServer = field(init=False)
    platform: LocalPlatform = field(init=False)
    states: dict[str, str] = field(default_factory=dict)  # replica name -> its slice state
    specs: dict[str, ReplicaSpec] = field(default_factory=dict)
    _next: int = 0

    def start(self) -> KubePool:
        self.root.mkdir(parents=True, exist_ok=True)
        self.apiserver = StandInApiServer("fairshare").start()
        kubeconfig = self.apiserver.kubeconfig(self.root / "kubeconfig")
        # Concurrency well above the load: the test measures endpoint churn, not Envoy's queueing.
        cfg = small_config(self.root, free_port(), replicas=self.replicas, concurrency=64)
        self.platform = LocalPlatform(PlatformOptions(
            config_dir=cfg, state_dir=self.root / "state", xds_port=free_port(), status_port=free_port(),
            endpoint_args=("--endpoints-from", "kubernetes", "--kubeconfig", str(kubeconfig))))
        try:
            # The API starts empty (a fresh install); the platform's replicas are listed once ready.
            self.platform.start()
            for spec in self.platform.replicas:
                self.specs[spec.name] = spec
                self.states[spec.name] = "ready"
            self._next = len(self.platform.replicas)
            self.publish()
            self.wait_gateway(lambda hosts: hosts == self.expected())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if hasattr(self, "platform"):
            self.platform.stop()
        if hasattr(self, "apiserver"):
            self.apiserver.close()

    # -- what the cluster would write ------------------------------------------------------------------

    def publish(self) -> None:
        # A slice has one port for all its endpoints. In a cluster every replica has its own address on the
        # same port; here they share 127.0.0.1 on ports of their own, so each has a slice of its own.
        for name in sorted(self.specs):
            self._apply_one(name)

    def expected(self) -> dict[int, bool]:
        """What the gateway should hold: replica port -> draining."""
        return {self.specs[n].port: s == "terminating" for n, s in self.states.items()
                if s in ("ready", "terminating")}

    def scale_up(self) -> ReplicaSpec:
        """A new replica: started, listed once ready, and in the gateway's endpoints before this returns."""
        template = next(iter(self.specs.values()))
        self._next += 1
        spec = ReplicaSpec(REGION, POOL, f"r{self._next}", free_port(), template.models, free_port(),
                           template.cache_budget_mb)
        self.platform._start_replica(spec)
        self.platform._wait_replica(spec)
        self.specs[spec.name], self.states[spec.name] = spec, "ready"
        self._apply_one(spec.name)
        self.wait_gateway(lambda hosts: hosts == self.expected())
        return spec

    def scale_down(self, name: str) -> None:
        """As a pod's deletion goes: terminating (still serving) at once, drained by the gateway, then the
        process stops and the endpoint leaves the slice."""
        self.states[name] = "terminating"
        self._apply_one(name)
        self.wait_gateway(lambda hosts: hosts == self.expected())
        self.platform.supervisor.stop(name)
        self.apiserver.delete(f"{DATA_SLICE}-{name}")
        del self.states[name], self.specs[name]
        self.wait_gateway(lambda hosts: hosts == self.expected())

    def roll(self) -> None:
        """A rolling restart (maxSurge 1, maxUnavailable 0): for each old replica, a new one ready first."""
        for old in sorted(self.specs):
            self.scale_up()
            self.scale_down(old)

    def _apply_one(self, name: str) -> None:
        host = self.platform.opts.host
        self.apiserver.apply(endpoint_slice(f"{DATA_SLICE}-{name}", REGION, POOL,
                                            [(host, self.states[name], name)], self.specs[name].port))

    # -- what the gateway holds ------------------------------------------------------------------------

    def gateway_hosts(self) -> dict[int, bool]:
        """The tenant cluster's hosts in Envoy (admin /clusters): port -> draining."""
        cluster = naming.tenant_cluster(TENANT, "classifier", REGION)
        data = json.loads(self.platform.envoys[REGION].admin_get("/clusters?format=json"))
        for c in data.get("cluster_statuses", []):
            if c["name"] == cluster:
                return {h["address"]["socket_address"]["port_value"]:
                        h.get("health_status", {}).get("eds_health_status") == "DRAINING"
                        for h in c.get("host_statuses", [])}
        return {}

    def wait_gateway(self, check: Callable[[dict[int, bool]], bool], timeout: float = 30) -> float:
        """Until the gateway's hosts satisfy `check`; returns the seconds it took (a hang guard: not asserted)."""
        start = time.monotonic()
        while not check(hosts := self.gateway_hosts()):
            if time.monotonic() - start > timeout:
                raise AssertionError(f"gateway holds {hosts}, expected {self.expected()}")
            time.sleep(0.02)
        return time.monotonic() - start

    # -- load ------------------------------------------------------------------------------------------

    def token(self) -> str:
        assert self.platform.config is not None
        return issue_token(SigningKey.load_or_create(self.platform.opts.state_dir), self.platform.config.platform.auth,
                           TENANT)

    def under_load(self, concurrency: int = 4) -> Load:
        target = loadgen.Target(self.platform.gateway_url(REGION) + "/v2/models/classifier/infer", self.token())
        return Load(target, concurrency).begin()


@dataclass
class Load:
    target: loadgen.Target
    concurrency: int
    results: list[loadgen.Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def begin(self) -> Load:
        def loop() -> None:
            while not self._stop.is_set():
                self.results.extend(loadgen.run_sync(self.target, duration_s=0.5, concurrency=self.concurrency))
        self._thread = threading.Thread(target=loop, name="load", daemon=True)
        self._thread.start()
        return self

    def end(self) -> list[loadgen.Result]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        return self.results

    def failures(self) -> list[dict[str, Any]]:
        return [{"status": r.status, "error": r.error, "at_s": round(r.started_s, 3)} for r in self.results if not r.ok]
