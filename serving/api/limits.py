"""Requests per second per API key: a token bucket per key name, and the ASGI
middleware answering 429 with `Retry-After` before the model is touched.

A bucket holds up to `burst` tokens and gains `per_second` a second; a request
takes one, or is refused with the seconds until one is back (`Retry-After`,
whole seconds, at least 1). `api.rate_limit` sets the limit of every key;
`api.rate_limit.keys` overrides it for named keys. Buckets live in the worker
process: with `api.workers` processes each counts its own requests, so a key
may make up to workers x the limit through the whole server.

The key's name comes from the key check (serving/api/auth.py sets it in the
ASGI scope); with no key configured (`api.require_keys: false`) every caller
shares the bucket named `anonymous`. Public paths (health probes, /metrics, the
docs) are never limited.
"""

from __future__ import annotations

import json
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


def too_many_body(name: str, limit: RateLimit, wait_s: int) -> bytes:
    return json.dumps(
        {
            "error": (
                f"rate limit exceeded: the key {name!r} may make {limit.per_second:g} "
                f"requests per second (burst {limit.capacity}) per worker; retry "
                f"after {wait_s} s"
            ),
            "limit": {
                "key": name,
                "per_second": limit.per_second,
                "burst": limit.capacity,
                "scope": "worker",
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
        body = too_many_body(name, self.limiter.limit(name), seconds)
        await send_json(send, 429, body, [(b"retry-after", str(seconds).encode())])
