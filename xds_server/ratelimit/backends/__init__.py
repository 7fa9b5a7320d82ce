"""Limiter backends: one interface (`Backend.do_limit`), in-memory and Redis behind it."""

from xds_server.ratelimit.backends.base import Backend, BackendUnavailable, Decision, Hit

__all__ = ["Backend", "BackendUnavailable", "Decision", "Hit"]
