"""gRPC plumbing for ADS: both protocols on one port, each stream pinned to its Envoy's region.

The protocol modules are pure state machines; this module owns the I/O. Each stream runs one loop
over a single queue fed by two pumps (Envoy's requests, the region's snapshot publications), so the
state machine never sees concurrent calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf import struct_pb2

from xds_server.cells.keys import snapshot_key, split_key
from xds_server.controlplane.grpc_tls import GatewayOnly, serve_tls
from xds_server.listing import capped
from xds_server.xds.delta import DeltaStream
from xds_server.xds.metrics import MetricsService
from xds_server.xds.sotw import SotwStream
from xds_server.xds.store import DELTA, SOTW, Published, SnapshotStore

log = logging.getLogger("fairshare.xds.server")

REGION_KEY = "region"
CELL_KEY = "cell"

# Envoy pings its xDS connection (http2 connection_keepalive in our bootstrap) even when no config
# flows for hours; gRPC's defaults would answer that with GOAWAY "too_many_pings" and churn streams.
_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


class _Machine(Protocol):
    def on_request(self, req: Any) -> list[Any]: ...

    def on_snapshot(self, pub: Published) -> list[Any]: ...


class _End:
    """Queue marker: Envoy closed its side of the stream."""


_END = _End()


def node_region(node: base_pb2.Node) -> tuple[str, str | None]:
    """The node's region from node.metadata.region, or ("", why it is missing)."""
    if not node.HasField("metadata"):
        return "", "node.metadata is not set"
    value = node.metadata.fields.get(REGION_KEY)
    if value is None:
        return "", f"node.metadata has no {REGION_KEY!r} key (keys: {sorted(node.metadata.fields)})"
    if value.WhichOneof("kind") != "string_value" or not value.string_value:
        return "", f"node.metadata.{REGION_KEY} is not a non-empty string: {_struct_value_repr(value)}"
    return value.string_value, None


def node_cell(node: base_pb2.Node) -> tuple[str | None, str | None]:
    """The node's cell from node.metadata.cell (None: a single-cell region's gateway), or why it is bad."""
    value = node.metadata.fields.get(CELL_KEY) if node.HasField("metadata") else None
    if value is None:
        return None, None
    if value.WhichOneof("kind") != "string_value" or not value.string_value:
        return None, f"node.metadata.{CELL_KEY} is not a non-empty string: {_struct_value_repr(value)}"
    return value.string_value, None


def _struct_value_repr(value: struct_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    return f"{kind}={getattr(value, kind)!r}" if kind else "unset"


class _AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    async def StreamAggregatedResources(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        await self._serve(SOTW, request_iterator, context)

    async def DeltaAggregatedResources(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        await self._serve(DELTA, request_iterator, context)

    async def _serve(self, protocol: str, requests: AsyncIterator[Any], context: Any) -> None:
        it = aiter(requests)
        try:
            first = await anext(it)
        except StopAsyncIteration:
            return
        peer = context.peer()
        node_id = first.node.id or f"<no node id, peer {peer}>"
        region, missing = node_region(first.node)
        cell, bad_cell = node_cell(first.node)
        if missing is None and bad_cell is not None:
            region, missing = "", bad_cell
        # The snapshot this Envoy follows: its region's, or its cell's (or the front tier's) in a region
        # split into cells (xds_server/cells).
        key = snapshot_key(region, cell) if region else ""
        if missing is not None:
            log.warning("node %s (%s stream from %s) gets no config, its region is unknown: %s; "
                        "set node.metadata.region in its bootstrap", node_id, protocol, peer, missing)
        elif self._store.get(key) is None:
            cells = sorted(c for r, c in map(split_key, self._store.regions()) if c and r == region)
            if cell is None and cells:
                log.warning("node %s (%s stream from %s) is in region %r, which is split into cells: it gets "
                            "no config until its bootstrap sets node.metadata.cell to one of %s",
                            node_id, protocol, peer, region, capped(cells))
            else:
                log.warning("node %s (%s stream from %s) is in region %r%s, which has no snapshot yet "
                            "(snapshots published: %s); it gets config once one is published",
                            node_id, protocol, peer, region, f" cell {cell!r}" if cell else "",
                            capped(self._store.regions()) or "none")

        node = self._store.open_stream(node_id, key, protocol, cell=cell, peer=peer)
        machine: _Machine = SotwStream(self._store, node) if protocol == SOTW else DeltaStream(self._store, node)
        log.info("node %s connected (%s, region %r%s, peer %s, stream %d)", node_id, protocol, region,
                 f", cell {cell!r}" if cell else "", peer, node.stream_id)

        events: asyncio.Queue[Any] = asyncio.Queue()
        events.put_nowait(first)
        pumps = [asyncio.create_task(_pump_requests(it, events))]
        if key:
            pumps.append(asyncio.create_task(_pump_snapshots(self._store, key, events)))
        reason = "stream closed by Envoy"
        try:
            while True:
                item = await events.get()
                if item is _END:
                    break
                if isinstance(item, Published):
                    # Publications queue up while we write; only the newest matters.
                    responses = machine.on_snapshot(self._store.published(key) or item)
                else:
                    responses = machine.on_request(item)
                for resp in responses:
                    await context.write(resp)
        except asyncio.CancelledError:
            reason = "stream cancelled (Envoy went away or the server is stopping)"
            raise
        except Exception as exc:
            reason = f"stream failed: {exc!r}"
            if context.done():  # Envoy left while we were writing: an ordinary disconnect
                return
            log.exception("node %s: %s stream failed", node_id, protocol)
            raise
        finally:
            for task in pumps:
                task.cancel()
            self._store.close_stream(node)
            log.info("node %s disconnected (stream %d): %s", node_id, node.stream_id, reason)


async def _pump_requests(requests: AsyncIterator[Any], events: asyncio.Queue[Any]) -> None:
    try:
        async for req in requests:
            events.put_nowait(req)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken transport ends the stream like a clean close does
        log.debug("request stream ended: %r", exc)
    events.put_nowait(_END)


async def _pump_snapshots(store: SnapshotStore, region: str, events: asyncio.Queue[Any]) -> None:
    async for pub in store.watch(region):
        events.put_nowait(pub)


class XdsServer:
    """ADS (state-of-the-world and delta) on one gRPC port, serving snapshots from `store`."""

    def __init__(self, store: SnapshotStore, host: str = "127.0.0.1", port: int = 0,
                 tls_dir: Path | None = None) -> None:
        self.store = store
        # Mutual TLS, only the gateway's certificate (xds_server.controlplane.grpc_tls); None: plaintext.
        self.tls_dir = tls_dir
        self.host = host
        self.port = port
        self._server: grpc.aio.Server | None = None
        self._bound_port: int | None = None

    @property
    def bound_port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("XdsServer is not started")
        return self._bound_port

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("XdsServer already started")
        server = grpc.aio.server(options=_SERVER_OPTIONS,
                                 interceptors=[GatewayOnly()] if self.tls_dir is not None else None)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_AdsServicer(self.store), server)
        # Each gateway's stat sink streams here too (its memory, for `fairshare status`).
        server.add_generic_rpc_handlers((MetricsService(self.store).handler(),))
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = serve_tls(server, f"{host}:{self.port}", self.tls_dir)
        except RuntimeError as exc:
            raise OSError(f"xDS server cannot listen on {host}:{self.port}: {exc}") from exc
        if bound == 0:  # older grpc signals failure this way instead of raising
            raise OSError(f"xDS server cannot listen on {host}:{self.port}")
        await server.start()
        self._server, self._bound_port = server, bound
        log.info("xDS server listening on %s:%d (ADS: sotw and delta, %s)", host, bound,
                 "mutual TLS" if self.tls_dir is not None else "plaintext")

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting streams and end open ones after `grace` seconds (None: wait for them)."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop(grace)
        log.info("xDS server on port %s stopped", self._bound_port)

    async def __aenter__(self) -> XdsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(0)
