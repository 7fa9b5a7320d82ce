"""State-of-the-world ADS: one stream's protocol state, free of gRPC.

The server feeds it requests and snapshot publications and writes whatever responses it returns.
Every response for a type carries the full set Envoy should hold (all resources for wildcard types,
the subscribed names that exist otherwise), so "did anything change" reduces to comparing a content
key with the one last sent. That same comparison is what stops a NACKed response from being resent:
the server waits for content that differs, i.e. the next snapshot change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from xds_server.listing import clipped
from xds_server.snapshot import ENDPOINT, WILDCARD_TYPES, Resource
from xds_server.xds.store import NACK_MESSAGE_CHARS, short_type
from xds_server.xds.stream import CONTROL_PLANE, REQUIRED_TYPES, AdsStream

log = logging.getLogger("fairshare.xds.sotw")

ContentKey = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _TypeState:
    names: frozenset[str]
    sent_key: ContentKey | None = None
    sent_nonce: str = ""
    pending: bool = False
    nacked: bool = False
    unanswered: dict[str, str] = field(default_factory=dict)  # nonce -> version it carried


class SotwStream(AdsStream[discovery_pb2.DiscoveryResponse]):
    """Protocol state of one StreamAggregatedResources stream."""

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> list[discovery_pb2.DiscoveryResponse]:
        type_url = req.type_url
        state = self._types.get(type_url)
        if state is None or not req.response_nonce:
            # A (re)subscription: answer it even if the content equals what an earlier stream had.
            self._types[type_url] = state = _TypeState(names=frozenset(req.resource_names))
            log.debug("node %s subscribed %s %s", self._node.node_id, short_type(type_url),
                      sorted(state.names) or "*")
            return self._respond_all([type_url])

        version = state.unanswered.get(req.response_nonce)
        if version is not None:
            # Envoy answers responses in order, possibly merging some; older ones won't be answered now.
            answered = int(req.response_nonce)
            state.unanswered = {n: v for n, v in state.unanswered.items() if int(n) > answered}
        if req.HasField("error_detail"):
            self._nack(type_url, version or "<unknown>", req)
        if req.response_nonce != state.sent_nonce:
            # Envoy answered an older response; a newer one is in flight and Envoy will answer it with
            # its then-current names, so acting on this one would only duplicate work.
            log.debug("node %s: stale nonce %s for %s (latest %s)", self._node.node_id,
                      req.response_nonce, short_type(type_url), state.sent_nonce)
            return []

        state.pending = False
        state.nacked = req.HasField("error_detail")
        if not state.nacked:
            self._store.record_ack(self._node, type_url, req.version_info, req.response_nonce)
        state.names = frozenset(req.resource_names)
        return self._respond_all([type_url])

    def _nack(self, type_url: str, version: str, req: discovery_pb2.DiscoveryRequest) -> None:
        message = req.error_detail.message
        log.warning(
            "NACK from node %s (region %s): %s version %s rejected (Envoy's last accepted: %s): %s",
            self._node.node_id, self._node.region, short_type(type_url), version,
            req.version_info or "<none>", clipped(message, NACK_MESSAGE_CHARS),  # whole in status
        )
        self._store.record_nack(self._node, type_url, version, req.response_nonce, message)

    def _forget_endpoints_sent(self, clusters: discovery_pb2.DiscoveryResponse) -> bool:
        # State of the world: a CDS response holds every cluster, so any of them may be new.
        self._types[ENDPOINT].sent_key = None
        return True

    def _respond(self, type_url: str) -> discovery_pb2.DiscoveryResponse | None:
        if self._pub is None:
            return None
        state = self._types[type_url]
        key = self._desired_key(type_url, state)
        if not self._needs_send(type_url, state, key):
            return None
        resources = self._resources(type_url, state)
        nonce = str(next(self._nonces))
        version = self._pub.snapshot.version
        state.sent_key, state.sent_nonce = key, nonce
        state.unanswered[nonce] = version
        state.pending = True
        log.debug("node %s <- %s version %s (%d resources, nonce %s)", self._node.node_id,
                  short_type(type_url), version, len(resources), nonce)
        return discovery_pb2.DiscoveryResponse(
            version_info=version,
            resources=[r.packed for r in resources],
            type_url=type_url,
            nonce=nonce,
            control_plane=CONTROL_PLANE,
        )

    def _desired_key(self, type_url: str, state: _TypeState) -> ContentKey:
        """Identifies the content a response would carry now; cheap, as it runs on every ACK."""
        assert self._pub is not None
        snapshot = self._pub.snapshot
        if type_url in WILDCARD_TYPES:
            # The per-type digest is cached on the snapshot: no walk over thousands of clusters.
            return (("*", snapshot.type_version(type_url)),)
        of_type = snapshot.of_type(type_url)
        return tuple((n, of_type[n].version) for n in sorted(state.names) if n in of_type)

    def _resources(self, type_url: str, state: _TypeState) -> list[Resource]:
        assert self._pub is not None
        of_type = self._pub.snapshot.of_type(type_url)
        names = of_type if type_url in WILDCARD_TYPES else (n for n in state.names if n in of_type)
        return [of_type[n] for n in sorted(names)]

    @staticmethod
    def _needs_send(type_url: str, state: _TypeState, key: ContentKey) -> bool:
        if key == state.sent_key:
            return False
        # Named types: nothing to say about names that don't exist (yet), unless retracting some.
        return type_url in WILDCARD_TYPES or bool(key) or bool(state.sent_key)

    def _check_applied(self) -> None:
        if self._pub is None:
            return
        for type_url in set(self._types) | set(REQUIRED_TYPES):
            state = self._types.get(type_url)
            if state is None or state.pending or state.nacked:
                return
            if self._needs_send(type_url, state, self._desired_key(type_url, state)):
                return
        self._store.record_applied(self._node, self._pub)

