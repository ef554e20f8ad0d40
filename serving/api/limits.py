"""Requests per second per API key: a token bucket per key name, and the ASGI
middleware answering 429 with `Retry-After` before the model is touched.

A bucket holds up to `burst` tokens and gains `per_second` a second; a request
takes one, or is refused with the seconds until one is back (`Retry-After`,
whole seconds, at least 1). `api.rate_limit` sets the limit of every key;
`api.rate_limit.keys` overrides it for named keys. Buckets live in the worker
process: with `api.workers` processes each counts its own requests, so a key
may make up to workers x the limit through the whole server. With
`api.rate_limit.redis` the buckets live in Redis instead, shared by every worker
and replica using it (`RedisRateLimiter`; each worker falls back to its own
buckets while Redis is unreachable).

The key's name comes from the key check (serving/api/auth.py sets it in the
ASGI scope); with no key configured (`api.require_keys: false`) every caller
shares the bucket named `anonymous`. Public paths (health probes, /metrics, the
docs) are never limited.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable

from core.config import RateLimit, RateLimitConfig
from serving.api.auth import (
    KEY_NAME,
    ASGIApp,
    Receive,
    Scope,
    Send,
    is_public,
    send_json,
)

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
_EPSILON = 1e-9
Clock = Callable[[], float]


class TokenBucket:
    """`burst` tokens, refilled at `per_second`; `take` spends one if it can."""

    def __init__(self, per_second: float, burst: int, clock: Clock) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is back."""
        now = self.clock()
        # a clock that steps back (it should not: monotonic) refills nothing
        elapsed = max(0.0, now - self.last)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.per_second)
        self.last = now
        # the tolerance: a client pacing exactly at the rate is not refused for
        # a token short by a float rounding
        if self.tokens >= 1.0 - _EPSILON:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.per_second


def retry_after(wait: float) -> int:
    """`Retry-After` in whole seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait))


class RateLimiter:
    """The buckets of one worker, one per key name, made at a key's first request."""

    def __init__(self, config: RateLimitConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when the buckets are shared by every worker (in Redis)."""
        return False

    def limit(self, name: str) -> RateLimit:
        return self.config.keys.get(name, self.config)

    def take(self, name: str) -> float:
        """0.0 when `name` may make a request now, else the seconds to wait."""
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                limit = self.limit(name)
                bucket = TokenBucket(limit.per_second, limit.capacity, self.clock)
                self._buckets[name] = bucket
            return bucket.take()


# One bucket as a Redis hash (tokens, ts), updated atomically by one script on
# Redis's clock, so every worker and replica sees the same bucket whatever its
# own clock says. Numbers travel as strings: Redis truncates Lua numbers it
# returns to integers. The hash expires once it would be full again anyway.
_REDIS_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""
REDIS_PREFIX = "propensity:rate:"


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis (`api.rate_limit.redis`), shared by every worker and
    replica that uses the same Redis and database: the limit is then the
    server's, not each worker's.

    While Redis cannot be reached (a call failing within `timeout_s`), the
    worker counts in its own buckets instead, as without Redis, logging an error
    once; it tries Redis again every `retry_s` and logs when it is back. So an
    outage loosens the limit to per worker, and never refuses or stalls the
    API."""

    def __init__(
        self,
        config: RateLimitConfig,
        clock: Clock = time.monotonic,
        prefix: str = REDIS_PREFIX,
        timeout_s: float = 0.25,
        retry_s: float = 5.0,
    ) -> None:
        import redis

        super().__init__(config, clock)
        if config.redis is None:
            raise ValueError("api.rate_limit.redis is not set")
        self.url = config.redis
        self.prefix = prefix
        self.retry_s = retry_s
        self._errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            config.redis, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self.client.register_script(_REDIS_BUCKET)
        # None while Redis answers; else when to try it again
        self._retry_at: float | None = None

    @property
    def shared(self) -> bool:
        return self._retry_at is None

    def take(self, name: str) -> float:
        now = self.clock()
        if self._retry_at is not None and now < self._retry_at:
            return super().take(name)
        limit = self.limit(name)
        try:
            wait = float(
                self._script(
                    keys=[self.prefix + name],
                    args=[repr(float(limit.per_second)), limit.capacity],
                )
            )
        except self._errors as exc:
            if self._retry_at is None:
                log.error(
                    "rate limit: Redis at %s is unreachable (%s); each worker "
                    "counts its own requests until it is back",
                    self.url,
                    exc,
                )
            self._retry_at = now + self.retry_s
            return super().take(name)
        if self._retry_at is not None:
            log.warning(
                "rate limit: Redis at %s is back; limits shared again", self.url
            )
            self._retry_at = None
        return wait


def limiter_from_config(config: RateLimitConfig) -> RateLimiter:
    """The shared limiter when `redis` is set, else the worker's own."""
    return RateLimiter(config) if config.redis is None else RedisRateLimiter(config)


def too_many_body(name: str, limit: RateLimit, wait_s: int, scope: str) -> bytes:
    where = "per worker" if scope == "worker" else "across all workers"
    return json.dumps(
        {
            "error": (
                f"rate limit exceeded: the key {name!r} may make {limit.per_second:g} "
                f"requests per second (burst {limit.capacity}) {where}; retry "
                f"after {wait_s} s"
            ),
            "limit": {
                "key": name,
                "per_second": limit.per_second,
                "burst": limit.capacity,
                "scope": scope,
            },
            "retry_after": wait_s,
        }
    ).encode()


class KeyRateLimit:
    """Pure ASGI middleware: a request over its key's limit gets 429 with
    `Retry-After` and a JSON body naming the limit; the app never sees it."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        name = scope.get(KEY_NAME) or ANONYMOUS
        wait = self.limiter.take(name)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        seconds = retry_after(wait)
        scope_ = "shared" if self.limiter.shared else "worker"
        body = too_many_body(name, self.limiter.limit(name), seconds, scope_)
        await send_json(send, 429, body, [(b"retry-after", str(seconds).encode())])
