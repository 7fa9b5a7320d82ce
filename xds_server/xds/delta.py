"""Incremental (delta) ADS: one stream's protocol state, free of gRPC.

Per type we keep what Envoy subscribed to and what we believe it holds (name -> resource version,
seeded from initial_resource_versions on reconnect). A response carries only the difference between
that and the snapshot, plus removals. Belief is updated when a response is sent, so a NACKed
resource is not resent until its content changes in a later snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from xds_server.listing import clipped
from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE, WILDCARD_TYPES, Resource
from xds_server.xds.store import NACK_MESSAGE_CHARS, short_type
from xds_server.xds.stream import CONTROL_PLANE, REQUIRED_TYPES, AdsStream

log = logging.getLogger("fairshare.xds.delta")

WILDCARD = "*"

# What routes to clusters. A cluster leaves Envoy only once these have been sent and ACKed for the current
# snapshot: removed in the same push as the routes that used it, it went first (clusters lead the push
# order so that new ones exist before routes name them) and a request in between got 503 "no cluster"
# (an offboarded tenant's calls, for up to a third of a second at 10,000 tenants). The xDS protocol's
# guidance: push CDS, EDS, LDS, RDS, then remove the clusters no longer referenced.
_ROUTING = (LISTENER, SCOPED_ROUTE, ROUTE)

# Up to this many clusters in one CDS response, only the endpoint sets they read are resent after it;
# beyond (a first connection, a large onboarding) every subscribed set is, without unpacking each cluster.
_NAMED_RESEND_MAX = 256


@dataclass(frozen=True, slots=True)
class _Sent:
    version: str
    names: frozenset[str]


@dataclass(slots=True)
class _TypeState:
    wildcard: bool
    names: set[str]
    known: dict[str, str]
    in_flight: dict[str, _Sent] = field(default_factory=dict)
    # Names whose latest delivery Envoy rejected: it still runs an older version of them.
    rejected: set[str] = field(default_factory=set)
    # Wildcard subscriptions need one answer even when empty: Envoy's init waits for it.
    answered: bool = False


def _name(resource: Resource) -> str:
    return resource.name


class DeltaStream(AdsStream[discovery_pb2.DeltaDiscoveryResponse]):
    """Protocol state of one DeltaAggregatedResources stream."""

    def on_request(
        self, req: discovery_pb2.DeltaDiscoveryRequest
    ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        type_url = req.type_url
        subscribe = set(req.resource_names_subscribe)
        unsubscribe = set(req.resource_names_unsubscribe)
        state = self._types.get(type_url)
        if state is None:
            wildcard = WILDCARD in subscribe or (not subscribe and type_url in WILDCARD_TYPES)
            state = _TypeState(
                wildcard=wildcard,
                names=subscribe - {WILDCARD},
                # Endpoints are always sent on subscription: a cluster Envoy warms after a reconnect may
                # share an EDS name Envoy already holds, and would wait for an update forever otherwise.
                known={} if type_url == ENDPOINT else dict(req.initial_resource_versions),
            )
            self._types[type_url] = state
            log.debug("node %s subscribed %s %s (has %d)", self._node.node_id, short_type(type_url),
                      "*" if wildcard else sorted(state.names), len(state.known))
        else:
            self._change_subscription(state, subscribe, unsubscribe)

        if req.response_nonce:
            self._on_reply(type_url, state, req)
        if type_url in _ROUTING and CLUSTER in self._types:
            # This ACK may be the last the held cluster removals wait for.
            return self._respond_all([type_url, CLUSTER])
        return self._respond_all([type_url])

    @staticmethod
    def _change_subscription(state: _TypeState, subscribe: set[str], unsubscribe: set[str]) -> None:
        if WILDCARD in subscribe:
            state.wildcard = True
        if WILDCARD in unsubscribe:
            state.wildcard = False
        for name in subscribe - {WILDCARD}:
            state.names.add(name)
            # The spec wants a (re)subscribed resource sent even if we think Envoy has it.
            state.known.pop(name, None)
        for name in unsubscribe - {WILDCARD}:
            state.names.discard(name)
            if not state.wildcard:
                state.known.pop(name, None)
                state.rejected.discard(name)

    def _on_reply(self, type_url: str, state: _TypeState, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        sent = state.in_flight.pop(req.response_nonce, None)
        if sent is None:
            log.debug("node %s: reply to unknown nonce %s for %s", self._node.node_id, req.response_nonce,
                      short_type(type_url))
            return
        if req.HasField("error_detail"):
            state.rejected |= sent.names
            message = req.error_detail.message
            log.warning(
                "NACK from node %s (region %s): %s version %s rejected (%d resources in it): %s",
                self._node.node_id, self._node.region, short_type(type_url), sent.version,
                len(sent.names), clipped(message, NACK_MESSAGE_CHARS),  # whole in status
            )
            self._store.record_nack(self._node, type_url, sent.version, req.response_nonce, message)
        else:
            state.rejected -= sent.names
            self._store.record_ack(self._node, type_url, sent.version, req.response_nonce)

    def _forget_endpoints_sent(self, clusters: discovery_pb2.DeltaDiscoveryResponse) -> bool:
        # Only what the sent clusters read: Envoy applies a resent set to every cluster reading it, and
        # thousands of tenant clusters share one. A response that only removes clusters warms none:
        # resending every set after it cost an offboarding 0.3-0.6 s of Envoy's time at 10,000 tenants.
        if not clusters.resources:
            return False
        eds = self._types[ENDPOINT]
        names: set[str] | frozenset[str] = eds.names
        if len(clusters.resources) <= _NAMED_RESEND_MAX:
            names = {n for r in clusters.resources if (n := _eds_name(r.resource.value)) is not None} & eds.names
        for name in names:
            eds.known.pop(name, None)
        return bool(names)

    def _respond(self, type_url: str) -> discovery_pb2.DeltaDiscoveryResponse | None:
        if self._pub is None:
            return None
        state = self._types[type_url]
        send, removed = self._diff(type_url, state)
        if not send and not removed and (state.answered or not state.wildcard):
            return None
        nonce = str(next(self._nonces))
        version = self._pub.snapshot.version
        state.in_flight[nonce] = _Sent(version=version, names=frozenset([r.name for r in send] + removed))
        for res in send:
            state.known[res.name] = res.version
        for name in removed:
            del state.known[name]
        state.answered = True
        log.debug("node %s <- %s version %s (+%d -%d, nonce %s)", self._node.node_id, short_type(type_url),
                  version, len(send), len(removed), nonce)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed) for r in send
            ],
            removed_resources=removed,
            control_plane=CONTROL_PLANE,
        )

    def _diff(self, type_url: str, state: _TypeState) -> tuple[list[Resource], list[str]]:
        assert self._pub is not None
        of_type = self._pub.snapshot.of_type(type_url)
        known = state.known
        # Sorted after filtering: this runs on every response and every ACK, and sorting all 10,000
        # names of a type first cost ~5 ms each time (an ACK of a 100-tenant change took 15 ms).
        if state.wildcard:
            send = [r for n, r in of_type.items() if known.get(n) != r.version]
        else:
            send = [r for n in state.names if (r := of_type.get(n)) is not None and known.get(n) != r.version]
        send.sort(key=_name)
        removed = sorted(n for n in known if n not in of_type and (state.wildcard or n in state.names))
        if removed and type_url == CLUSTER and not self._routing_settled():
            removed = []  # held until nothing routes to them (see _ROUTING)
        return send, removed

    def _routing_settled(self) -> bool:
        """Envoy has ACKed the current snapshot's routing (a rejected part counts as not settled: Envoy
        still routes by the older version, which may name the clusters)."""
        for type_url in _ROUTING:
            state = self._types.get(type_url)
            if state is None:
                continue
            if state.in_flight or state.rejected:
                return False
            send, removed = self._diff(type_url, state)
            if send or removed:
                return False
        return True

    def _check_applied(self) -> None:
        if self._pub is None:
            return
        for type_url in set(self._types) | set(REQUIRED_TYPES):
            state = self._types.get(type_url)
            if state is None or state.in_flight or state.rejected:
                return
            if state.wildcard and not state.answered:
                return
            send, removed = self._diff(type_url, state)
            if send or removed:
                return
        self._store.record_applied(self._node, self._pub)


def _eds_name(packed: bytes) -> str | None:
    """The endpoint set a packed cluster reads (its EDS service name, else its own name); None: not EDS."""
    cluster = cluster_pb2.Cluster.FromString(packed)
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or cluster.name
