"""EndpointSlices of the pool Services, through the official `kubernetes` client: list, then watch from
the list's resourceVersion (with bookmarks), relist when the version has expired (410 Gone), back off
with jitter on any other error, and restart a watch that has gone quiet (a stalled connection).

The client is synchronous, so the list/watch loop runs in one thread; each change is mapped to a whole
EndpointDirectory there and handed to the control plane's event loop (`EndpointSource._publish`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ReadTimeoutError

from xds_server.endpoints.slices import POOL_LABEL, REGION_LABEL, SlicePorts, directory
from xds_server.endpoints.source import EndpointSource, EndpointSourceError

log = logging.getLogger("fairshare.endpoints")

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class KubernetesSettings:
    # None: the pod's own namespace in a cluster, else the kubeconfig context's, else "default".
    namespace: str | None = None
    # None: in-cluster config inside a pod, else $KUBECONFIG or ~/.kube/config.
    kubeconfig: Path | None = None
    # The labels the chart puts on every pool Service (and the EndpointSlice controller on their slices).
    label_selector: str = f"{REGION_LABEL},{POOL_LABEL}"
    ports: SlicePorts = field(default_factory=SlicePorts)
    # The server ends each watch after this long; the next resumes from the last resourceVersion.
    watch_timeout_s: int = 300
    # No byte for this long means the watch has stalled (the server sends a bookmark about every
    # minute): it is dropped and resumed.
    idle_timeout_s: float = 90.0
    connect_timeout_s: float = 5.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 10.0
    page_size: int = 500


@dataclass
class WatchStats:
    """What the loop has done, for status and tests."""
    lists: int = 0
    watches: int = 0
    expired: int = 0  # 410 Gone: the resourceVersion was compacted away, so a relist
    errors: int = 0
    stalls: int = 0  # watches restarted after going quiet
    bookmarks: int = 0
    events: int = 0
    resource_version: str | None = None
    synced: bool = False
    last_error: str | None = None


class KubernetesEndpoints(EndpointSource):
    def __init__(self, settings: KubernetesSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or KubernetesSettings()
        self.stats = WatchStats()
        self.namespace = ""
        self._api: client.DiscoveryV1Api | None = None
        self._slices: dict[str, dict[str, Any]] = {}
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._synced: asyncio.Future[None] | None = None
        self._random = random.Random()

    # -- lifecycle --------------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Returns after the first successful list: until then the control plane has no endpoints it
        could publish without taking every pool out of service."""
        self._bind()
        api_client, self.namespace = _connect(self.settings)
        self._api = client.DiscoveryV1Api(api_client)
        loop = asyncio.get_running_loop()
        self._synced = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="endpointslice-watch", daemon=True)
        self._thread.start()
        log.info("following EndpointSlices in namespace %s (selector %s)", self.namespace,
                 self.settings.label_selector)
        await self._synced

    async def close(self) -> None:
        self._stopping.set()
        w = self._watch
        if w is not None:
            w.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.settings.connect_timeout_s + 1)

    # -- the list/watch loop (its own thread) -----------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self.stats.resource_version is None:
                    self._list()
                    failures = 0
                if self._watch_once():
                    failures = 0
                    continue
                failures += 1  # a watch that ended at once, having shown nothing
            except ApiException as err:
                if err.status == 410:
                    # Compacted past our version: what we missed is gone from history, so list it all again.
                    self.stats.expired += 1
                    log.info("EndpointSlice watch expired (410 Gone); relisting")
                    self.stats.resource_version = None
                    continue
                failures += 1
                self._failed(f"HTTP {err.status} {err.reason}", failures)
            except ReadTimeoutError:
                # Quiet for longer than a bookmark's interval: the connection has stalled. Resume at once
                # from the last version (the timeout itself paces a server that keeps stalling).
                self.stats.stalls += 1
                log.info("EndpointSlice watch quiet for %.0fs; restarting it", self.settings.idle_timeout_s)
                continue
            except Exception as err:  # connection refused or dropped, a bad answer
                if self._stopping.is_set():
                    break
                failures += 1
                self._failed(f"{type(err).__name__}: {err}", failures)
            if failures:
                self._stopping.wait(self._backoff(failures))

    def _failed(self, reason: str, failures: int) -> None:
        self.stats.errors += 1
        self.stats.last_error = reason
        level = logging.WARNING if failures <= 3 or failures % 10 == 0 else logging.DEBUG
        log.log(level, "EndpointSlice %s failed (%d in a row): %s", "watch" if self.stats.synced else "list",
                failures, reason)

    def _backoff(self, failures: int) -> float:
        # Exponential, with jitter so a fleet of control planes does not retry in step.
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** (failures - 1))
        return self._random.uniform(ceiling / 2, ceiling)

    def _list(self) -> None:
        assert self._api is not None
        slices: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": self.settings.label_selector,
                                      "limit": self.settings.page_size, "_preload_content": False,
                                      "_request_timeout": (self.settings.connect_timeout_s,
                                                           self.settings.idle_timeout_s)}
            if token:
                kwargs["_continue"] = token
            resp = self._api.list_namespaced_endpoint_slice(self.namespace, **kwargs)
            body = json.loads(resp.data)
            for item in body.get("items") or []:
                slices[item["metadata"]["name"]] = item
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self._slices = slices
        self.stats.lists += 1
        self.stats.resource_version = str(meta["resourceVersion"])
        self._changed_slices()
        if not self.stats.synced:
            self.stats.synced = True
            self._signal_synced()

    def _watch_once(self) -> bool:
        """One watch from the last resourceVersion until the server ends it. Whether it showed anything."""
        assert self._api is not None
        self._watch = w = watch.Watch()
        self.stats.watches += 1
        began, seen = time.monotonic(), False
        try:
            for event in w.stream(self._api.list_namespaced_endpoint_slice, self.namespace,
                                  label_selector=self.settings.label_selector,
                                  resource_version=self.stats.resource_version, allow_watch_bookmarks=True,
                                  timeout_seconds=self.settings.watch_timeout_s,
                                  _request_timeout=(self.settings.connect_timeout_s, self.settings.idle_timeout_s)):
                seen = True
                self._apply(event["type"], event["raw_object"])
                if self._stopping.is_set():
                    break
        finally:
            self._watch = None
        # A server that answers and closes at once is retried with backoff, not in a tight loop.
        return seen or time.monotonic() - began > 1.0

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED"):
            self._slices[meta["name"]] = obj
        elif kind == "DELETED":
            self._slices.pop(meta["name"], None)
        else:
            log.warning("EndpointSlice watch: unexpected event type %r ignored", kind)
            return
        if meta.get("resourceVersion"):
            self.stats.resource_version = str(meta["resourceVersion"])
        if kind != "BOOKMARK":
            self.stats.events += 1
            self._changed_slices()

    def _changed_slices(self) -> None:
        self._publish(directory(self._slices.values(), self.settings.ports))

    def _signal_synced(self) -> None:
        fut, loop = self._synced, self._loop
        if fut is None or loop is None or loop.is_closed():
            return

        def done() -> None:
            if not fut.done():
                fut.set_result(None)
        loop.call_soon_threadsafe(done)

    def status(self) -> dict[str, object]:
        s = self.stats
        return {"source": "kubernetes", "namespace": self.namespace, "synced": s.synced,
                "resource_version": s.resource_version, "lists": s.lists, "watches": s.watches,
                "expired": s.expired, "errors": s.errors, "stalls": s.stalls, "last_error": s.last_error}


def _connect(settings: KubernetesSettings) -> tuple[client.ApiClient, str]:
    """The API client and namespace: in-cluster config inside a pod, a kubeconfig outside."""
    cfg = client.Configuration()
    namespace = settings.namespace
    try:
        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            if namespace is None and _SA_NAMESPACE.is_file():
                namespace = _SA_NAMESPACE.read_text().strip()
        else:
            path = str(settings.kubeconfig) if settings.kubeconfig is not None else None
            if path is not None and not Path(path).is_file():
                raise EndpointSourceError(f"kubeconfig {path}: no such file")
            config.load_kube_config(config_file=path, client_configuration=cfg)
            if namespace is None:
                _, active = config.list_kube_config_contexts(config_file=path)
                namespace = (active or {}).get("context", {}).get("namespace")
    except config.ConfigException as err:
        where = settings.kubeconfig or "in-cluster config, $KUBECONFIG or ~/.kube/config"
        raise EndpointSourceError(f"no usable Kubernetes credentials ({where}): {err}") from err
    return client.ApiClient(cfg), namespace or "default"
