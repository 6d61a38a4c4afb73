"""A fleet-wide rate limit per source, shared by every worker process through Redis.

GCRA (generic cell rate algorithm) in one Lua script, timed by the Redis server's clock so
workers on different hosts agree. A vendor's 429 pauses the whole fleet for that source
until its Retry-After has passed (`pause`). `RateLimitedTransport` applies both to every
request a vendor client makes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import redis.asyncio

from callhook.http import parse_retry_after

# KEYS: [theoretical arrival time key, pause key]. ARGV: [interval_us, burst].
# Returns microseconds to wait before trying again (0 = go now; the slot is taken).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return paused - now end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_us > current then
  redis.call('SET', KEYS[1], until_us, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""


_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local taken_until = tonumber(redis.call('GET', KEYS[1]) or '0')
return {now, taken_until, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


@dataclass(frozen=True, slots=True)
class LimitState:
    """A source's limiter now: how far ahead its slots are taken, and a vendor's pause."""

    #: seconds until the next free slot (0: a request could go now)
    next_slot_in_s: float
    #: seconds the fleet still waits after the vendor's last 429 (0: not paused)
    paused_for_s: float


class FleetRateLimiter:
    """`await limiter.acquire(source, rate_per_s)` before each vendor request."""

    # burst 0: requests strictly `1 / rate` apart. A burst of one let `rate + 1` requests
    # into one second, over a documented per-second limit such as Quo's 10/s.
    def __init__(self, client: redis.asyncio.Redis, namespace: str, *, burst: int = 0) -> None:
        self.namespace = namespace
        self.burst = burst
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._state = client.register_script(_STATE)

    def _keys(self, source: str) -> list[str]:
        base = f"{self.namespace}:ratelimit:{source}"
        return [base, f"{base}:pause"]

    async def acquire(self, source: str, rate_per_s: float, *, max_wait_s: float = 60.0) -> None:
        """Wait until this process may make one request for `source`.

        Raises TimeoutError if no slot came within `max_wait_s` (the caller retries later).
        """
        interval_us = max(1, int(1_000_000 / rate_per_s))
        waited = 0.0
        while True:
            wait_us = int(
                await self._acquire(keys=self._keys(source), args=[interval_us, self.burst])
            )
            if wait_us <= 0:
                return
            delay = wait_us / 1_000_000
            if waited + delay > max_wait_s:
                raise TimeoutError(f"rate limit for {source}: no slot within {max_wait_s}s")
            waited += delay
            await asyncio.sleep(delay)

    async def state(self, source: str) -> LimitState:
        now, taken_until, paused_until = await self._state(keys=self._keys(source))
        return LimitState(
            next_slot_in_s=max(0, int(taken_until) - int(now)) / 1_000_000,
            paused_for_s=max(0, int(paused_until) - int(now)) / 1_000_000,
        )

    async def pause(self, source: str, seconds: float) -> None:
        """Hold every worker's requests for `source` for `seconds` (after a 429)."""
        await self._pause(keys=self._keys(source)[1:], args=[max(1, int(seconds * 1_000_000))])


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Every request through it waits for a fleet-wide slot of its source; a 429 answer
    pauses the whole fleet for that source (for Retry-After, else `default_pause_s`).

    Wraps a connection pool (`inner`): its own (`owns_inner`, closed with it) or one it
    shares (left open for the others).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        limiter: FleetRateLimiter,
        source: str,
        rate_per_s: float,
        *,
        default_pause_s: float = 1.0,
        owns_inner: bool = False,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.source = source
        self.rate_per_s = rate_per_s
        self.default_pause_s = default_pause_s
        self.owns_inner = owns_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            await self.limiter.acquire(self.source, self.rate_per_s)
        except TimeoutError as exc:
            raise httpx.PoolTimeout(str(exc), request=request) from None
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            await self.limiter.pause(self.source, retry_after or self.default_pause_s)
        return response

    async def aclose(self) -> None:
        """Close the inner pool if it is this transport's own; a shared one is left to its
        owner."""
        if self.owns_inner:
            await self.inner.aclose()
