"""Global per-tenant rate limits: Envoy's envoy.service.ratelimit.v3 API over a GCRA limiter, with limits
compiled from the tenant spec (xds_server/compiler/ratelimits.py) and swapped in with each snapshot."""
