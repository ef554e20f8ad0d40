"""Per-key limits and the access log on a real `bentoml serve`: past the burst a
key gets 429 with Retry-After, after waiting it gets 200 again, and the server's
log holds one access line per request, with the key's name and record count but
never the key or a customer id. The Redis-backed limiter on the real Redis
(127.0.0.1:6379 unless $PROPENSITY_TEST_REDIS; skipped, saying why, without
one): shared by two limiters as by two workers, and falling back to each
worker's own buckets while Redis is unreachable."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from core.config import RateLimitConfig
from serving.api.limits import REDIS_PREFIX, RedisRateLimiter
from serving.api.servers import with_workers
from tests.helpers import (
    TEST_API_KEY,
    Project,
    auth,
    free_port,
    serving,
    write_config,
)

pytestmark = pytest.mark.integration

BURST = 3


def access_lines(log: Path) -> list[dict]:
    """The JSON of the `propensity.access` lines in a server log."""
    out = []
    for raw in log.read_text().splitlines():
        _, marker, rest = raw.partition("propensity.access ")
        if marker:
            out.append(json.loads(rest))
    return out


REDIS = os.environ.get("PROPENSITY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_error() -> str | None:
    """Why Redis cannot be used here, or None."""
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis is unreachable at {REDIS}: {exc}"
    return None


def test_a_key_past_its_burst_gets_429_then_200_after_retry_after(
    trained: Project, tmp_path: Path
) -> None:
    """With Redis (as on every machine of the project): two workers sharing the
    buckets, so exactly the burst passes whichever worker takes a request;
    without it, one worker and its own buckets (the same answers)."""
    shared = redis_error() is None
    # a token every 2 s: the burst is spent long before one comes back
    rate: dict = {"per_second": 0.5, "burst": BURST}
    if shared:
        import redis

        rate["redis"] = REDIS
        # a bucket left by an earlier run (it expires within seconds anyway)
        redis.Redis.from_url(REDIS).delete(f"{REDIS_PREFIX}env-1")
    config = write_config(
        tmp_path / "propensity.yaml",
        trained.events,
        trained.customers,
        api={"rate_limit": rate},
    )
    env = {**trained.env(), "PROPENSITY_CONFIG": str(config)}
    if shared:
        env = with_workers(env, "propensity", 2)
    ids = [f"C{n:07d}" for n in range(69, 74)]
    with serving(env, tmp_path / "serve.log") as server:
        url = f"{server.url}/predict_by_id"
        answers = [
            httpx.post(url, json={"customer_ids": ids}, headers=auth(), timeout=30)
            for _ in range(BURST + 2)
        ]
        # no online store in this project: 503 from the endpoint, not the limit
        statuses = [r.status_code for r in answers]
        assert statuses == [503] * BURST + [429] * 2, statuses
        refused = answers[BURST]
        assert refused.status_code == 429, refused.text
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        body = refused.json()
        assert body["limit"]["key"] == "env-1"
        assert body["limit"]["per_second"] == 0.5
        assert body["limit"]["burst"] == BURST
        assert body["limit"]["scope"] == ("shared" if shared else "worker")
        # public paths are never limited
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        time.sleep(wait)
        again = httpx.post(
            f"{server.url}/metadata", json={}, headers=auth(), timeout=30
        )
        assert again.status_code == 200, again.text
        # a wrong key is 401, spends no token and is logged without a name
        assert httpx.post(url, json={}, headers=auth("wrong")).status_code == 401
        time.sleep(0.5)  # the worker writes the last line as the answer leaves
        log = server.log.read_text()
        lines = access_lines(server.log)
    by_id = [x for x in lines if x["endpoint"] == "/predict_by_id"]
    # two workers write to one log: lines may land out of request order
    assert Counter((x["status"], x["records"], x["key"]) for x in by_id) == {
        (503, len(ids), "env-1"): BURST,
        (429, None, "env-1"): 2,
        (401, None, None): 1,
    }
    assert [(x["endpoint"], x["status"]) for x in lines if x not in by_id] == [
        ("/metadata", 200)
    ]
    assert all(x["latency_ms"] >= 0 for x in lines)
    assert TEST_API_KEY not in log
    assert not any(cid in log for cid in ids)


def redis_limiter(url: str = REDIS, **limit) -> RedisRateLimiter:
    """A limiter on its own key prefix (tests never share a bucket)."""
    config = RateLimitConfig(redis=url, **limit)
    return RedisRateLimiter(config, prefix=f"propensity-test:{uuid.uuid4().hex}:")


@pytest.fixture
def redis_up() -> None:
    if (why := redis_error()) is not None:
        pytest.skip(why)


@pytest.mark.usefixtures("redis_up")
def test_two_workers_on_redis_share_one_bucket_per_key() -> None:
    first = redis_limiter(per_second=0.5, burst=3)
    second = RedisRateLimiter(first.config, prefix=first.prefix)  # another worker
    assert first.shared and second.shared
    waits = [w.take("crm") for w in (first, second, first)]
    assert waits == [0.0, 0.0, 0.0]
    # the shared burst is spent: either worker refuses, saying ~2 s
    assert 1.5 < second.take("crm") <= 2.0
    assert 1.5 < first.take("crm") <= 2.0
    # another key has its own bucket
    assert second.take("web") == 0.0
    # a bucket left alone expires from Redis once it would be full anyway
    ttl = first.client.pttl(first.prefix + "crm")
    assert 0 < ttl <= 3 / 0.5 * 1000 + 1000


@pytest.mark.usefixtures("redis_up")
def test_per_key_overrides_apply_in_redis_too() -> None:
    limiter = redis_limiter(
        per_second=100, burst=100, keys={"batch": {"per_second": 1, "burst": 1}}
    )
    assert limiter.take("batch") == 0.0
    assert 0.5 < limiter.take("batch") <= 1.0
    assert limiter.take("crm") == 0.0


def test_an_unreachable_redis_falls_back_to_the_workers_own_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="serving.api.limits")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = redis_limiter(url, per_second=1, burst=2)
    answers = [limiter.take("crm") for _ in range(3)]
    assert answers[:2] == [0.0, 0.0] and answers[2] > 0  # the local bucket
    assert not limiter.shared
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # said once, not per request
    assert url in errors[0] and "each worker counts its own" in errors[0]


@pytest.mark.usefixtures("redis_up")
def test_a_worker_goes_back_to_redis_once_it_answers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down, then up: the limiter tries Redis again after retry_s and shares its
    buckets again, saying so. (Redis 'comes back' by pointing the limiter's
    client at the live server: stopping the machine's Redis is not the test's.)"""
    caplog.set_level(logging.WARNING, logger="serving.api.limits")
    now = [0.0]
    dead = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisRateLimiter(
        RateLimitConfig(redis=dead, per_second=1, burst=5),
        clock=lambda: now[0],
        prefix=f"propensity-test:{uuid.uuid4().hex}:",
    )
    assert limiter.take("crm") == 0.0 and not limiter.shared
    live = redis_limiter(per_second=1, burst=5)
    limiter.client, limiter._script = live.client, live._script
    now[0] += 1.0  # within retry_s: still local, Redis not asked
    assert limiter.take("crm") == 0.0 and not limiter.shared
    now[0] += limiter.retry_s
    assert limiter.take("crm") == 0.0 and limiter.shared
    assert any("is back" in r.getMessage() for r in caplog.records)
    # the shared bucket is Redis's: a fresh one, one token spent
    tokens = float(live.client.hget(limiter.prefix + "crm", "tokens"))
    assert tokens == pytest.approx(4.0, abs=0.01)
