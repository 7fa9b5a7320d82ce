"""Redis counters shared by every gateway of a region: GCRA in one Lua script, so a request's checks
and its settlement are atomic and cost one round trip. Time comes from Redis (TIME), so gateways and
service replicas with skewed clocks still agree.

Short socket timeouts, and after a failure no new attempt for `retry_after_s`: an outage is answered
at once by the tier's failure mode instead of every request waiting out a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from xds_server.ratelimit.backends.base import BackendUnavailable, Decision, Hit

log = logging.getLogger("fairshare.ratelimit")

# KEYS: counters. ARGV: per key, interval_us, tolerance_us, cost, settle (1/0).
# Returns per key {allowed, remaining, wait_us, reset_us}; mirrors base.gcra line for line.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats, out = {}, {}
local admit = true
for i = 1, n do
  local b = (i - 1) * 4
  local interval, tolerance = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local cost, settle = tonumber(ARGV[b + 3]), ARGV[b + 4] == '1'
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = math.max(tat + cost * interval, now)
  local ahead = new_tat - now
  if settle or ahead <= tolerance then
    tats[i] = new_tat
    out[i] = {1, math.max(0, math.floor((tolerance - ahead) / interval)), 0, math.floor(ahead)}
  else
    admit = false
    tats[i] = false
    out[i] = {0, math.max(0, math.floor((tolerance - (tat - now)) / interval)),
              math.floor(ahead - tolerance) + 1, math.floor(tat - now)}
  end
end
for i = 1, n do
  local b = (i - 1) * 4
  if tats[i] and (admit or ARGV[b + 4] == '1') then
    local ttl_ms = math.floor((tats[i] - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.1f', tats[i]), 'PX', ttl_ms)
  end
end
return out
"""


@dataclass
class RedisBackend:
    url: str
    timeout_s: float
    retry_after_s: float = 1.0
    name: str = "redis"
    _client: aioredis.Redis = field(init=False)
    _down_until: float = 0.0
    _up: bool = True

    def __post_init__(self) -> None:
        self._client = aioredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry_on_timeout=False, health_check_interval=0, max_connections=64,
        )
        self._script = self._client.register_script(_GCRA)

    @property
    def up(self) -> bool:
        return self._up

    async def do_limit(self, hits: Sequence[Hit]) -> list[Decision]:
        if time.monotonic() < self._down_until:
            raise BackendUnavailable("redis is down (retrying shortly)")
        args: list[str] = []
        for h in hits:
            args += [f"{h.interval_us:.6f}", f"{h.tolerance_us:.3f}", f"{h.cost:.6f}", "1" if h.settle else "0"]
        try:
            rows = await self._script(keys=[h.key for h in hits], args=args)
        except (RedisError, OSError, TimeoutError) as err:
            self._down_until = time.monotonic() + self.retry_after_s
            if self._up:
                self._up = False
                log.error("rate-limit backend redis unavailable (%s: %s); each tier's failure mode applies",
                          type(err).__name__, err)
            raise BackendUnavailable(f"redis: {type(err).__name__}") from None
        if not self._up:
            self._up = True
            log.warning("rate-limit backend redis is back")
        return [Decision(bool(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def close(self) -> None:
        await self._client.aclose()
