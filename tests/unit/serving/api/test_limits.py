"""Per-key rate limits: the token bucket on an injected clock, the limiter's
per-name buckets and overrides, and the middleware's 429 (without BentoML: a
tiny ASGI app stands in for the service, behind the real key check)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import ValidationError

from core.config import ApiConfig, RateLimitConfig
from serving.api.auth import BearerAuth, KeyRing, hash_key
from serving.api.limits import (
    ANONYMOUS,
    KeyRateLimit,
    RateLimiter,
    TokenBucket,
    retry_after,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_full_bucket_serves_the_burst_then_refuses_saying_how_long() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_second=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token back in 1/2 s
    clock.advance(0.25)
    assert bucket.take() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_a_bucket_refills_at_its_rate_up_to_the_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_second=10, burst=5, clock=clock)
    for _ in range(5):
        assert bucket.take() == 0.0
    clock.advance(3600)  # an idle hour buys the burst, not 36,000 requests
    assert [bucket.take() for _ in range(6)].count(0.0) == 5


def test_a_steady_rate_at_the_limit_is_never_refused() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_second=50, burst=1, clock=clock)
    for _ in range(1000):
        assert bucket.take() == 0.0
        clock.advance(1 / 50)


def test_a_clock_stepping_back_refills_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_second=1, burst=1, clock=clock)
    assert bucket.take() == 0.0
    clock.advance(-100)
    assert bucket.take() > 0
    clock.advance(1)
    assert bucket.take() == 0.0


@pytest.mark.parametrize(
    ("wait", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (9.5, 10)]
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    wait: float, header: int
) -> None:
    assert retry_after(wait) == header


def test_each_key_name_has_its_own_bucket_and_overrides_apply_by_name() -> None:
    clock = FakeClock()
    config = RateLimitConfig(
        per_second=1, burst=2, keys={"batch": {"per_second": 10, "burst": 5}}
    )
    limiter = RateLimiter(config, clock)
    assert [limiter.take("crm") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("crm") == pytest.approx(1.0)
    # another key is untouched by crm's spending
    assert limiter.take("web") == 0.0
    # the override: 5 at once, a token back every 0.1 s
    assert [limiter.take("batch") for _ in range(5)] == [0.0] * 5
    assert limiter.take("batch") == pytest.approx(0.1)
    assert limiter.limit("batch").capacity == 5
    assert limiter.limit("crm").capacity == 2


def test_burst_defaults_to_the_rate_rounded_up() -> None:
    assert RateLimitConfig(per_second=2.5).capacity == 3
    assert RateLimitConfig(per_second=0.2).capacity == 1


@pytest.mark.parametrize(
    ("rate_limit", "where"),
    [
        ({"per_second": 0}, "rate_limit.per_second"),
        ({"per_second": 5, "burst": 0}, "rate_limit.burst"),
        ({"per_second": 5, "brust": 9}, "rate_limit.brust"),
        ({"per_second": 5, "keys": {"crm": {}}}, "rate_limit.keys.crm.per_second"),
    ],
)
def test_a_bad_rate_limit_names_its_key(rate_limit: dict, where: str) -> None:
    with pytest.raises(ValidationError, match=where.replace(".", r"\.")):
        ApiConfig(rate_limit=rate_limit)


# --- the middleware ------------------------------------------------------------

KEYS = {"crm": "crm-key-0123456789abcdef", "web": "web-key-fedcba9876543210"}
calls: list[str] = []


async def model(scope, receive, send) -> None:
    """The protected app: counts what reaches it."""
    calls.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def post_all(app, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.post(path, headers=h, json={}) for path, h in requests]

    return asyncio.run(go())


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def guarded(config: RateLimitConfig, clock: FakeClock, keys: bool = True):
    limited = KeyRateLimit(model, RateLimiter(config, clock))
    if not keys:
        return limited
    ring = KeyRing([hash_key(n, k) for n, k in KEYS.items()])
    return BearerAuth(limited, ring)


def test_over_the_limit_is_429_with_retry_after_and_never_reaches_the_model() -> None:
    calls.clear()
    clock = FakeClock()
    app = guarded(RateLimitConfig(per_second=0.5, burst=2), clock)
    answers = post_all(app, [("/predict", bearer("crm"))] * 3)
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert calls == ["/predict", "/predict"]
    refused = answers[2]
    assert refused.headers["retry-after"] == "2"  # a token back in 2 s
    body = refused.json()
    assert body["limit"] == {
        "key": "crm",
        "per_second": 0.5,
        "burst": 2,
        "scope": "worker",
    }
    assert body["retry_after"] == 2
    assert "'crm'" in body["error"] and "0.5 requests per second" in body["error"]
    assert KEYS["crm"] not in refused.text
    # another key still passes; after the wait, crm does too
    assert post_all(app, [("/predict", bearer("web"))])[0].status_code == 200
    clock.advance(2)
    assert post_all(app, [("/predict", bearer("crm"))])[0].status_code == 200


def test_public_paths_and_unauthorised_requests_spend_no_token() -> None:
    calls.clear()
    clock = FakeClock()
    app = guarded(RateLimitConfig(per_second=1, burst=1), clock)
    answers = post_all(
        app,
        [("/readyz", {})] * 5
        + [("/predict", {"Authorization": "Bearer wrong"})] * 3
        + [("/predict", bearer("crm"))],
    )
    assert [r.status_code for r in answers] == [200] * 5 + [401] * 3 + [200]


def test_an_open_api_shares_the_anonymous_bucket() -> None:
    clock = FakeClock()
    app = guarded(RateLimitConfig(per_second=1, burst=1), clock, keys=False)
    answers = post_all(app, [("/predict", {}), ("/predict_by_id", {})])
    assert [r.status_code for r in answers] == [200, 429]
    assert answers[1].json()["limit"]["key"] == ANONYMOUS


def test_a_refused_request_spends_no_token() -> None:
    """Retrying early gets another 429 but does not push the wait further."""
    clock = FakeClock()
    bucket = TokenBucket(per_second=1, burst=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(10):
        assert bucket.take() == pytest.approx(1.0)
    clock.advance(1)
    assert bucket.take() == 0.0


def test_a_key_without_the_routes_scope_is_403_and_spends_no_token() -> None:
    calls.clear()
    clock = FakeClock()
    limited = KeyRateLimit(model, RateLimiter(RateLimitConfig(per_second=1), clock))
    ring = KeyRing([hash_key("crm", KEYS["crm"], scopes=frozenset({"score"}))])
    answers = post_all(
        BearerAuth(limited, ring),
        [("/forget", bearer("crm"))] * 3 + [("/predict", bearer("crm"))],
    )
    assert [r.status_code for r in answers] == [403, 403, 403, 200]
