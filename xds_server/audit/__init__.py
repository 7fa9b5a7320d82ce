"""The audit trail (docs: README "Audit trail"): a hash-chained JSON-lines log of every change the
control plane applies or refuses, and of operator actions such as offboarding.

    from xds_server.audit import AuditLog
    log = AuditLog(path)                       # opens (or starts) the chain at path
    log.append("offboard", tenants=["acme"], removed={...})   # -> the record as written

`verify(path)` walks the chain across rotated files and names the first break."""

from xds_server.audit.log import AuditError, AuditLog
from xds_server.audit.verify import Break, Verified, verify

__all__ = ["AuditError", "AuditLog", "Break", "Verified", "verify"]
