"""Policy as code: Rego policies in policy/ decide quotas, residency and PII rules.

One engine interface (`PolicyEngine`) with an embedded backend (regorus, the default), an OPA-server
backend over OPA's REST API, and the real OPA Go engine for proving the two agree.
"""

from xds_server.policy.engine import PolicyEngine, PolicyError
from xds_server.policy.sources import PolicySources

__all__ = ["PolicyEngine", "PolicyError", "PolicySources"]
