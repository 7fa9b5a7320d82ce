"""A stand-in for the Kubernetes API server's EndpointSlice list and watch, for tests and benchmarks.

It speaks the documented wire format the real `kubernetes` client reads: a list answers JSON with
`metadata.resourceVersion`; `?watch=1` answers a chunked stream of newline-delimited events (ADDED,
MODIFIED, DELETED, BOOKMARK with `allowWatchBookmarks`), replayed from the requested resourceVersion, and
an ERROR event carrying a Status with code 410 when that version has been compacted away (as the real
server does on an expired version). `labelSelector` filters both, and an object whose labels stop
matching is seen as DELETED, as on the real server.

It can also misbehave the ways a real API server or the network does: stall an open watch, drop its
connection, expire it, answer 500, or refuse connections. It runs its own event loop in a thread, so
sync tests and the client's sync threads can both drive it."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from xds_server.local.processes import free_port

API = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


def endpoint_slice(name: str, region: str, pool: str, endpoints: Iterable[tuple[str, str, str | None]],
                   port: int, port_name: str = "http", service: str | None = None) -> dict[str, Any]:
    """A slice as the EndpointSlice controller writes it for a chart pool Service (its labels copied).
    `endpoints`: (address, state, pod name) with state one of ready, terminating (still serving),
    terminated (terminating, no longer serving) or unready."""
    conditions = {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "terminating": {"ready": False, "serving": True, "terminating": True},
        "terminated": {"ready": False, "serving": False, "terminating": True},
        "unready": {"ready": False, "serving": False, "terminating": False},
    }
    svc = service or f"fairshare-pool-{pool}"
    return {
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": name, "labels": {
            "fairshare.io/region": region, "fairshare.io/pool": pool, "kubernetes.io/service-name": svc,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [addr], "conditions": conditions[state],
                       **({"targetRef": {"kind": "Pod", "name": pod}} if pod else {})}
                      for addr, state, pod in endpoints],
    }


def matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Kubernetes equality- and existence-based label selectors (`a`, `!a`, `a=b`, `a==b`, `a!=b`)."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class _Change:
    rv: int
    old: dict[str, Any] | None
    new: dict[str, Any] | None  # None: deleted (old carries the final state)


@dataclass
class _Watcher:
    selector: str | None
    bookmarks: bool
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    request: web.Request | None = None
    stalled: bool = False


def _event(change: _Change, selector: str | None) -> dict[str, Any] | None:
    def labels(o: dict[str, Any] | None) -> dict[str, str]:
        return ((o or {}).get("metadata") or {}).get("labels") or {}
    was = change.old is not None and matches(selector, labels(change.old))
    now = change.new is not None and matches(selector, labels(change.new))
    if now:
        return {"type": "MODIFIED" if was else "ADDED", "object": change.new}
    if was:
        final = change.new if change.new is not None else change.old
        assert final is not None
        gone = copy.deepcopy(final)
        gone["metadata"]["resourceVersion"] = str(change.rv)
        return {"type": "DELETED", "object": gone}
    return None


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class StandInApiServer:
    def __init__(self, namespace: str = "fairshare", port: int | None = None,
                 bookmark_every_s: float | None = None) -> None:
        self.namespace = namespace
        # Like the real server (about every minute there): a watch that asked for bookmarks gets one
        # this often, so a quiet watch is told it is alive.
        self.bookmark_every_s = bookmark_every_s
        self.port = port or free_port()
        self.rv = 100
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: list[_Change] = []
        self.compacted_below = 0  # watches from an older version get 410 Gone
        self.watchers: list[_Watcher] = []
        self._failures: list[int] = []
        self.requests: list[dict[str, str]] = []  # every request's query, for assertions
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="standin-apiserver", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- plumbing ---------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop and wait: every state change happens there, in order."""
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as err:  # handed back to the caller
                fut.set_exception(err)
        self._loop.call_soon_threadsafe(run)
        return fut.result(10)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin",
                                                         "namespace": self.namespace}}],
        }))
        return path

    def start(self) -> StandInApiServer:
        """Listen (again) on the same port."""
        self._run(self._start())
        return self

    async def _start(self) -> None:
        if self._runner is None:
            app = web.Application()
            app.router.add_get(API, self._endpointslices)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    def refuse(self) -> None:
        """Stop listening (connections are refused) and cut every open watch."""
        async def stop() -> None:
            self._drop_all()
            if self._site is not None:
                await self._site.stop()
                self._site = None
        self._run(stop())

    def close(self) -> None:
        async def shutdown() -> None:
            self._drop_all()
            if self._runner is not None:
                await self._runner.cleanup()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the state (what the EndpointSlice controller would write) --------------------------------------

    def apply(self, obj: dict[str, Any]) -> int:
        """Create or replace a slice; returns its new resourceVersion."""
        def do() -> int:
            new = copy.deepcopy(obj)
            name = new["metadata"]["name"]
            self.rv += 1
            new["metadata"].update(namespace=self.namespace, resourceVersion=str(self.rv),
                                   uid=f"uid-{name}")
            self._record(_Change(self.rv, self.objects.get(name), new))
            self.objects[name] = new
            return self.rv
        return int(self._call(do))

    def delete(self, name: str) -> int:
        def do() -> int:
            old = self.objects.pop(name)
            self.rv += 1
            self._record(_Change(self.rv, old, None))
            return self.rv
        return int(self._call(do))

    def _record(self, change: _Change) -> None:
        self.history.append(change)
        for w in self.watchers:
            ev = _event(change, w.selector)
            if ev is not None:
                w.queue.put_nowait(ev)

    # -- misbehaviour -----------------------------------------------------------------------------------

    def bookmark(self) -> int:
        """Every open watch that asked for bookmarks gets one at the current resourceVersion."""
        def do() -> int:
            for w in self.watchers:
                if w.bookmarks:
                    w.queue.put_nowait(self._bookmark())
            return self.rv
        return int(self._call(do))

    def _bookmark(self) -> dict[str, Any]:
        return {"type": "BOOKMARK", "object": {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                                               "metadata": {"resourceVersion": str(self.rv)}}}

    def compact(self) -> None:
        """Forget the history up to now: a watch resuming from an older version is told 410 Gone."""
        def do() -> None:
            self.compacted_below = self.rv
            self.history.clear()
        self._call(do)

    def expire_watches(self) -> None:
        """Compact, and tell every open watch its version is gone (the ERROR event, then the end). What a
        watch had not sent yet is lost with the history: only a relist finds it."""
        def do() -> None:
            self.compacted_below = self.rv
            self.history.clear()
            for w in self.watchers:
                w.stalled = False
                while not w.queue.empty():
                    w.queue.get_nowait()
                w.queue.put_nowait({"type": "ERROR", "object": _status(
                    410, "Expired", f"too old resource version: {self.rv - 1} ({self.rv})")})
                w.queue.put_nowait(None)
        self._call(do)

    def stall(self) -> int:
        """Every open watch goes quiet for good: its connection stays up and nothing more arrives on it
        (a half-dead connection or a wedged server). Watches opened later are served. Returns how many."""
        def do() -> int:
            for w in self.watchers:
                w.stalled = True
            return len(self.watchers)
        return int(self._call(do))

    def drop_watches(self) -> None:
        """Cut every open watch's connection mid-stream (no end of the chunked body)."""
        self._call(self._drop_all)

    def _drop_all(self) -> None:
        for w in list(self.watchers):
            if w.request is not None and w.request.transport is not None:
                w.request.transport.abort()
            self.watchers.remove(w)

    def fail(self, status: int = 500, times: int = 1) -> None:
        """The next `times` requests (list or watch) answer `status` with a Status body."""
        def do() -> None:
            self._failures.extend([status] * times)
        self._call(do)

    def open_watches(self) -> int:
        return int(self._call(lambda: len(self.watchers)))

    # -- the API ----------------------------------------------------------------------------------------

    async def _endpointslices(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        self.requests.append(dict(q))
        if request.match_info["namespace"] != self.namespace:
            return web.json_response(_status(403, "Forbidden", "namespace not served here"), status=403)
        if self._failures:
            code = self._failures.pop(0)
            return web.json_response(_status(code, "InternalError", "stand-in told to fail"), status=code)
        selector = q.get("labelSelector")
        if q.get("watch") not in ("1", "true", "True"):
            items = [o for _, o in sorted(self.objects.items())
                     if matches(selector, o["metadata"].get("labels") or {})]
            return web.json_response({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                                      "metadata": {"resourceVersion": str(self.rv)}, "items": items})
        return await self._watch(request, selector)

    async def _watch(self, request: web.Request, selector: str | None) -> web.StreamResponse:
        q = request.query
        w = _Watcher(selector, q.get("allowWatchBookmarks") in ("true", "True", "1"), request=request)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        since = q.get("resourceVersion")
        if since and int(since) < self.compacted_below:
            await self._send(resp, {"type": "ERROR", "object": _status(
                410, "Expired", f"too old resource version: {since} ({self.compacted_below})")})
            await resp.write_eof()
            return resp
        if since:
            backlog = [ev for c in self.history if c.rv > int(since) if (ev := _event(c, selector))]
        else:  # no version: the current state as ADDED events, then changes
            backlog = [{"type": "ADDED", "object": o} for _, o in sorted(self.objects.items())
                       if matches(selector, o["metadata"].get("labels") or {})]
        for ev in backlog:
            w.queue.put_nowait(ev)
        self.watchers.append(w)
        timeout = float(q.get("timeoutSeconds") or 1800)
        deadline = self._loop.time() + timeout
        next_bookmark = self._loop.time() + (self.bookmark_every_s or timeout + 1)
        try:
            while True:
                if request.transport is None or request.transport.is_closing():
                    return resp  # the client hung up, or the connection was cut
                if w.stalled:  # silent for good, past its timeout too, until the client hangs up
                    await asyncio.sleep(0.05)
                    continue
                left = deadline - self._loop.time()
                if left <= 0:
                    break
                if w.bookmarks and self.bookmark_every_s and self._loop.time() >= next_bookmark:
                    next_bookmark = self._loop.time() + self.bookmark_every_s
                    await self._send(resp, self._bookmark())
                try:
                    ev = await asyncio.wait_for(w.queue.get(), timeout=min(0.05, left))
                except TimeoutError:
                    continue
                if ev is None:
                    break
                if w.stalled:
                    continue  # stalled while it waited: this connection delivers nothing more
                await self._send(resp, ev)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if w in self.watchers:
                self.watchers.remove(w)
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, ev: dict[str, Any]) -> None:
        await resp.write(json.dumps(ev).encode() + b"\n")
