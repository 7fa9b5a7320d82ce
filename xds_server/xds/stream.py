"""What both ADS protocols share: one stream's snapshot cursor, and pushing types in dependency order."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from envoy.config.core.v3 import base_pb2

from xds_server.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER
from xds_server.xds.store import NodeStatus, Published, SnapshotStore

CONTROL_PLANE = base_pb2.ControlPlane(identifier="fairshare")

# Envoy subscribes to both on every stream; until they are ACKed a node has not applied anything.
REQUIRED_TYPES = (CLUSTER, LISTENER)

Response = TypeVar("Response")


def in_push_order(type_urls: list[str]) -> list[str]:
    """PUSH_ORDER first (references before their targets' users), then anything else Envoy asked for."""
    rank = {t: i for i, t in enumerate(PUSH_ORDER)}
    return sorted(set(type_urls), key=lambda t: (rank.get(t, len(rank)), t))


class AdsStream(ABC, Generic[Response]):
    """Protocol state of one ADS stream; the protocols differ in how they answer one type."""

    def __init__(self, store: SnapshotStore, node: NodeStatus) -> None:
        self._store = store
        self._node = node
        self._types: dict[str, Any] = {}
        self._pub: Published | None = None
        self._nonces = itertools.count(1)

    def on_snapshot(self, pub: Published) -> list[Response]:
        if self._pub is not None and pub.seq <= self._pub.seq:
            return []
        self._pub = pub
        return self._respond_all(list(self._types))

    def _respond_all(self, type_urls: list[str]) -> list[Response]:
        out: list[Response] = []
        pending = in_push_order(type_urls)
        while pending:
            type_url = pending.pop(0)
            resp = self._respond(type_url)
            if resp is None:
                continue
            out.append(resp)
            if type_url == CLUSTER and ENDPOINT in self._types and self._forget_endpoints_sent(resp):
                # A new cluster whose EDS name other clusters already use adds no subscription, so
                # Envoy asks for nothing and the cluster would stay warming: resend the endpoints.
                pending = in_push_order([*pending, ENDPOINT])
        self._check_applied()
        return out

    @abstractmethod
    def _respond(self, type_url: str) -> Response | None:
        """The response this type needs now, or None if Envoy already holds the current content."""

    @abstractmethod
    def _forget_endpoints_sent(self, clusters: Response) -> bool:
        """Make the next EDS answer carry the subscribed endpoint sets the clusters of this CDS response
        may read, changed or not; False when there are none to resend."""

    @abstractmethod
    def _check_applied(self) -> None:
        """Record the snapshot as applied once Envoy has ACKed all of it."""
