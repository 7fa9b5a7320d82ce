"""What every region's Envoys should run, and what each Envoy has actually accepted.

The store is the only state shared between the compiler and the protocol servers: the compiler
publishes one snapshot per region, streams watch their region, and report back what their Envoy
ACKed or NACKed. That report is what lets callers wait until config is really live (`wait_applied`)
instead of sleeping.

Everything here runs on one asyncio loop. `set_snapshot` alone may be called from another thread
(a file watcher, a CLI worker); it hops onto the loop before touching shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from xds_server.cells.keys import split_key
from xds_server.listing import capped, clipped
from xds_server.snapshot import Snapshot

log = logging.getLogger("fairshare.xds.store")

SOTW = "sotw"
DELTA = "delta"

# Enough history to resolve a version a slow caller asks about; older versions are long superseded.
_HISTORY = 256
# A NACK's message as logs and exceptions quote it: Envoy's reason can name thousands of resources. The
# status JSON (last_nack.message) keeps it whole.
NACK_MESSAGE_CHARS = 1_000


class ConfigRejected(Exception):
    """An Envoy NACKed the version someone is waiting for: it will not apply it."""

    def __init__(self, node_id: str, nack: Nack) -> None:
        super().__init__(
            f"node {node_id} rejected {short_type(nack.type_url)} version {nack.version}: "
            f"{clipped(nack.message, NACK_MESSAGE_CHARS)}"
        )
        self.node_id = node_id
        self.nack = nack


@dataclass(frozen=True, slots=True)
class Published:
    """A snapshot as published to a region; `seq` orders publications even when versions repeat."""

    seq: int
    region: str
    snapshot: Snapshot
    at: float


@dataclass(slots=True)
class Ack:
    version: str
    nonce: str
    at: float
    # Digest of the type's resources in the publication this ACK was for (Snapshot.type_version), when
    # that is still known: a type no later snapshot changed is not sent again, so its ACK keeps an older
    # version and only the content tells whether Envoy holds what is published now.
    content: str | None = None


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """An Envoy's own memory gauges, as its OpenTelemetry stat sink last reported them (xds/metrics.py)."""

    allocated: int | None
    heap_size: int | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"allocated": self.allocated, "heap_size": self.heap_size, "at": self.at}


@dataclass(frozen=True, slots=True)
class Nack:
    type_url: str
    version: str
    nonce: str
    message: str
    at: float


@dataclass(slots=True)
class NodeStatus:
    """One Envoy's stream as the protocol server sees it. A new stream gets a fresh object."""

    node_id: str
    # The snapshot key the node follows (xds_server.cells.keys): its region, or `<region>/<cell>`.
    region: str
    protocol: str
    stream_id: int
    cell: str | None = None
    # gRPC's name for the connection (ipv4:10.0.3.7:41234): the gateway's stat sink shares it (xds.metrics).
    peer: str = ""
    connected: bool = True
    connected_at: float = field(default_factory=time.time)
    disconnected_at: float | None = None
    acks: dict[str, Ack] = field(default_factory=dict)
    last_nack: Nack | None = None
    nack_count: int = 0
    applied_version: str | None = None
    applied_at: float | None = None
    applied_seq: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "region": split_key(self.region)[0],
            "cell": self.cell,
            "snapshot": self.region,
            "protocol": self.protocol,
            "stream_id": self.stream_id,
            "connected": self.connected,
            "connected_at": self.connected_at,
            "disconnected_at": self.disconnected_at,
            "applied_version": self.applied_version,
            "applied_at": self.applied_at,
            "acked": {
                short_type(t): {"version": a.version, "nonce": a.nonce, "at": a.at}
                for t, a in sorted(self.acks.items())
            },
            "last_nack": None
            if self.last_nack is None
            else {
                "type": short_type(self.last_nack.type_url),
                "version": self.last_nack.version,
                "nonce": self.last_nack.nonce,
                "message": self.last_nack.message,
                "at": self.last_nack.at,
            },
            "nack_count": self.nack_count,
        }


def short_type(type_url: str) -> str:
    """'type.googleapis.com/envoy.config.cluster.v3.Cluster' -> 'Cluster' (for logs and status)."""
    return type_url.rsplit(".", 1)[-1]


class SnapshotStore:
    """One snapshot per region, plus per-node delivery status."""

    def __init__(self, forget_after: float = 3600.0) -> None:
        # Disconnected nodes stay visible in status() this long, so churn (pod restarts) can't grow it forever.
        self.forget_after = forget_after
        self._published: dict[str, Published] = {}
        # The publication before the current one: an ACK that arrives just after a newer publish is for it.
        self._previous: dict[str, Published] = {}
        # By node id, not by stream: the metrics stream is a stream of its own, and outlives ADS reconnects.
        self._memory: dict[str, NodeMemory] = {}
        self._by_peer: dict[str, NodeStatus] = {}
        self._history: dict[str, deque[tuple[str, int]]] = {}
        self._region_changed: dict[str, asyncio.Event] = {}
        self._nodes: dict[str, NodeStatus] = {}
        self._status_changed = asyncio.Event()
        self._seq = 0
        self._stream_ids = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- snapshots -------------------------------------------------------------------------------

    def set_snapshot(self, region: str, snapshot: Snapshot) -> None:
        """Publish `snapshot` to every Envoy of `region`. Safe to call from any thread."""
        if not region:
            raise ValueError("region must be a non-empty string")
        loop = self._loop
        if loop is not None and self._loop_thread != threading.get_ident() and loop.is_running():
            loop.call_soon_threadsafe(self._publish, region, snapshot)
        else:
            self._publish(region, snapshot)

    def get(self, region: str) -> Snapshot | None:
        pub = self._published.get(region)
        return None if pub is None else pub.snapshot

    def published(self, region: str) -> Published | None:
        return self._published.get(region)

    def regions(self) -> list[str]:
        return sorted(self._published)

    async def watch(self, region: str) -> AsyncIterator[Published]:
        """Yield the region's current snapshot (once there is one), then each newer one.

        Publications that happen while the consumer is busy are coalesced: it only ever sees the
        newest, which is all a stream needs to converge.
        """
        self._bind_loop()
        seen = -1
        while True:
            changed = self._region_changed.setdefault(region, asyncio.Event())
            pub = self._published.get(region)
            if pub is not None and pub.seq != seen:
                seen = pub.seq
                yield pub
                continue
            await changed.wait()

    def _publish(self, region: str, snapshot: Snapshot) -> None:
        before = self._published.get(region)
        if before is not None and before.snapshot is snapshot:
            return  # the compiler kept it as it was (compile.py): its Envoys have nothing to diff
        self._seq += 1
        pub = Published(seq=self._seq, region=region, snapshot=snapshot, at=time.time())
        if before is not None:
            self._previous[region] = before
        self._published[region] = pub
        self._history.setdefault(region, deque(maxlen=_HISTORY)).append((snapshot.version, pub.seq))
        log.info(
            "region %s: snapshot %s published (%d resources, %d bytes)",
            region,
            snapshot.version,
            snapshot.count(),
            snapshot.total_bytes(),
        )
        changed = self._region_changed.pop(region, None)
        if changed is not None:
            changed.set()
        self._notify_status()

    def _seq_of(self, region: str, version: str) -> int | None:
        for v, seq in reversed(self._history.get(region, ())):
            if v == version:
                return seq
        return None

    # -- node status, reported by the protocol servers -------------------------------------------

    def open_stream(self, node_id: str, region: str, protocol: str, cell: str | None = None,
                    peer: str = "") -> NodeStatus:
        self._bind_loop()
        self._stream_ids += 1
        node = NodeStatus(node_id=node_id, region=region, protocol=protocol, stream_id=self._stream_ids, cell=cell,
                          peer=peer)
        if peer:
            self._by_peer[peer] = node
        previous = self._nodes.get(node_id)
        if previous is not None and previous.connected:
            # Usually an Envoy that restarted before its old stream was torn down; the newest wins.
            log.info("node %s opened stream %d while stream %d is open", node_id, node.stream_id,
                     previous.stream_id)
        self._nodes[node_id] = node
        self._notify_status()
        return node

    def close_stream(self, node: NodeStatus) -> None:
        if self._by_peer.get(node.peer) is node:
            del self._by_peer[node.peer]
        node.connected = False
        node.disconnected_at = now = time.time()
        stale = [
            node_id
            for node_id, n in self._nodes.items()
            if not n.connected and n.disconnected_at is not None and now - n.disconnected_at > self.forget_after
        ]
        for node_id in stale:
            del self._nodes[node_id]
        self._notify_status()

    def record_ack(self, node: NodeStatus, type_url: str, version: str, nonce: str) -> None:
        content = None
        for pub in (self._published.get(node.region), self._previous.get(node.region)):
            if pub is not None and pub.snapshot.version == version:
                content = pub.snapshot.type_version(type_url)
                break
        node.acks[type_url] = Ack(version=version, nonce=nonce, at=time.time(), content=content)
        self._notify_status()

    def node_at(self, peer: str) -> NodeStatus | None:
        """The node whose open ADS stream came over this connection (gRPC's peer string)."""
        return self._by_peer.get(peer)

    def record_memory(self, node_id: str, allocated: int | None, heap_size: int | None) -> None:
        """What an Envoy's stat sink reported (xds_server.xds.metrics); shown beside its node in status()."""
        self._memory[node_id] = NodeMemory(allocated=allocated, heap_size=heap_size, at=time.time())
        if len(self._memory) > 2 * max(len(self._nodes), 64):
            # Pods come and go; keep only the nodes status() still shows (and the one just reported).
            for gone in set(self._memory) - set(self._nodes) - {node_id}:
                del self._memory[gone]

    def record_nack(self, node: NodeStatus, type_url: str, version: str, nonce: str, message: str) -> None:
        node.last_nack = Nack(type_url=type_url, version=version, nonce=nonce, message=message, at=time.time())
        node.nack_count += 1
        self._notify_status()

    def record_applied(self, node: NodeStatus, pub: Published) -> None:
        if node.applied_seq == pub.seq:
            return
        node.applied_seq = pub.seq
        node.applied_version = pub.snapshot.version
        node.applied_at = time.time()
        log.debug("node %s applied %s", node.node_id, pub.snapshot.version)
        self._notify_status()

    def nodes(self) -> list[NodeStatus]:
        return list(self._nodes.values())

    def node(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)

    def _notify_status(self) -> None:
        self._status_changed.set()
        self._status_changed = asyncio.Event()

    # -- waiting and reporting -------------------------------------------------------------------

    async def wait_applied(
        self, region_or_node: str, version: str, timeout: float = 10.0, min_nodes: int = 1
    ) -> list[str]:
        """Wait until every connected node of a region (or one node, by id) has applied `version`.

        A node id is matched before a region name. At least `min_nodes` nodes must be connected, so
        waiting right after a snapshot is set does not succeed vacuously before any Envoy connects.
        "Applied" is per publication: a node running a later snapshot has applied earlier ones too.
        Returns the node ids that applied it; raises ConfigRejected as soon as one of them NACKs
        that version, TimeoutError (naming the laggards) when time runs out.
        """
        self._bind_loop()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            changed = self._status_changed
            done, waiting_on = self._applied_check(region_or_node, version, min_nodes)
            if done is not None:
                return done
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"{region_or_node}: version {version} not applied after {timeout}s; "
                                   f"{waiting_on}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _applied_check(self, key: str, version: str, min_nodes: int) -> tuple[list[str] | None, str]:
        single = self._nodes.get(key)
        region = single.region if single is not None else key
        target = self._seq_of(region, version)
        if target is None:
            return None, f"version {version} was never published to region {region!r}"
        if single is not None:
            nodes = [single] if single.connected else []
            min_nodes = 1
        else:
            nodes = [n for n in self._nodes.values() if n.region == region and n.connected]
        for n in nodes:
            nack = n.last_nack
            if nack is not None and nack.version == version and n.applied_seq < target:
                raise ConfigRejected(n.node_id, nack)
        behind = [n for n in nodes if n.applied_seq < target]
        if len(nodes) >= min_nodes and not behind:
            return [n.node_id for n in nodes], ""
        # Furthest behind first; a cell of hundreds of gateways is a few names and a count.
        detail = capped(f"{n.node_id} at {n.applied_version}" for n in sorted(behind, key=lambda n: n.applied_seq))
        return None, f"{len(nodes)} connected node(s) (need {min_nodes}); behind: {detail or 'none'}"

    def status(self) -> dict[str, Any]:
        """Plain, JSON-able view for the CLI and the status page."""
        return {
            "regions": {
                region: {
                    "version": pub.snapshot.version,
                    "published_at": pub.at,
                    "resources": pub.snapshot.count(),
                    # The types this snapshot has at all (a front tier's has no scoped routes).
                    "types": {short_type(t): len(by_name) for t, by_name in pub.snapshot.resources.items() if by_name},
                    "bytes": pub.snapshot.total_bytes(),
                    "nodes_connected": sum(
                        1 for n in self._nodes.values() if n.region == region and n.connected
                    ),
                    "nodes_applied": sum(
                        1
                        for n in self._nodes.values()
                        if n.region == region and n.connected and n.applied_seq == pub.seq
                    ),
                }
                for region, pub in sorted(self._published.items())
            },
            "nodes": {node_id: self._node_status(n) for node_id, n in sorted(self._nodes.items())},
            # The store's clock: ages in `fairshare status` are measured from it, not from the reader's.
            "at": time.time(),
        }

    def _node_status(self, n: NodeStatus) -> dict[str, Any]:
        out = n.to_dict()
        pub = self._published.get(n.region)
        for type_url, ack in n.acks.items():
            # Whether Envoy holds the type's content published now (not merely ACKed some version of it).
            out["acked"][short_type(type_url)]["current"] = pub is not None and (
                n.applied_seq == pub.seq or ack.content == pub.snapshot.type_version(type_url))
        memory = self._memory.get(n.node_id)
        out["memory"] = None if memory is None else memory.to_dict()
        return out

    def _bind_loop(self) -> None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # driven synchronously (unit tests); nothing to bind to yet
                return
            self._loop_thread = threading.get_ident()
