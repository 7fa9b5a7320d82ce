"""One interface over every Rego engine we run: embedded, an OPA server, and OPA's own Go engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xds_server.policy.sources import PolicySources

# Every tenant's decisions and every violation in one query, as a document path: data.fairshare.tenant.result.
DECISIONS = "fairshare/tenant/result"
# The same answers in two steps (xds_server/policy/decide.py): each tenant document's own, then the
# fleet-wide checks over every tenant's claim.
ENTRIES = "fairshare/tenant/entries"
FLEET = "fairshare/tenant/fleet"
# Where the platform's context (tiers, regions, models) lives for the policies: data.fairshare.platform.
PLATFORM_DATA = "fairshare/platform"


class PolicyError(Exception):
    """A policy that cannot be loaded or evaluated: names the backend and the file or query at fault."""

    def __init__(self, backend: str, where: str, message: str) -> None:
        self.backend, self.where, self.message = backend, where, message
        super().__init__(f"policy engine {backend}: {where}: {message}")


class PolicyEngine(Protocol):
    name: str

    def load(self, sources: PolicySources, platform: dict[str, Any]) -> None:
        """Replace the engine's policies and platform data. Raises PolicyError naming the bad file."""
        ...

    def query(self, path: str, input: Any) -> Any:
        """The document at `path` (slash-separated, under data) for `input`; None when undefined.
        Raises PolicyError when the evaluation fails or exceeds the engine's time limit."""
        ...

    def close(self) -> None: ...
