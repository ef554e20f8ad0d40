"""The access log: one JSON line per request naming the key's name, endpoint,
record count, status and latency, and never a key, a customer id or a body
(checked on the captured lines, behind the real key check and rate limit)."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from core.config import RateLimitConfig
from serving.api import access
from serving.api.access import LOGGER, AccessLog, endpoint, note_records
from serving.api.auth import BearerAuth, KeyRing, hash_key
from serving.api.limits import KeyRateLimit, RateLimiter
from tests.helpers import read_body

KEY = "crm-key-0123456789abcdef"
IDS = ["C0000069", "C0000070", "C0000071"]


async def service(scope, receive, send) -> None:
    """Stands in for an endpoint: reads the ids and reports how many, like the
    service's endpoints do; /boom fails."""
    body = await read_body(receive)
    if scope["path"] == "/boom":
        raise RuntimeError("the endpoint failed")
    ids = json.loads(body or b"{}").get("customer_ids")
    if ids is not None:
        # as BentoML runs a sync endpoint: in a thread, with a copy of the context
        await asyncio.to_thread(note_records, len(ids))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(ids).encode()})


def app(rate: RateLimitConfig | None = None):
    inner = service if rate is None else KeyRateLimit(service, RateLimiter(rate))
    return AccessLog(BearerAuth(inner, KeyRing([hash_key("crm", KEY)])))


def send_all(asgi, requests: list[tuple[str, str, dict, dict | None]]) -> list[int]:
    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            out = []
            for method, path, headers, body in requests:
                r = await c.request(method, path, headers=headers, json=body)
                out.append(r.status_code)
            return out

    return asyncio.run(go())


BEARER = {"Authorization": f"Bearer {KEY}"}


def lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_one_line_per_request_with_name_endpoint_records_status_latency(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    statuses = send_all(
        app(),
        [
            ("POST", "/predict_by_id", BEARER, {"customer_ids": IDS}),
            ("POST", "/predict_by_id", {"Authorization": "Bearer wrong"}, None),
            ("POST", "/metadata", BEARER, {}),
            ("GET", "/readyz", {}, None),  # public: not logged
        ],
    )
    assert statuses == [200, 401, 200, 200]
    got = lines(caplog)
    assert len(got) == 3
    first, unauthorised, metadata = got
    assert {k: v for k, v in first.items() if k != "latency_ms"} == {
        "key": "crm",
        "method": "POST",
        "endpoint": "/predict_by_id",
        "records": 3,
        "status": 200,
    }
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert unauthorised["key"] is None and unauthorised["status"] == 401
    assert unauthorised["records"] is None
    assert metadata["records"] is None and metadata["endpoint"] == "/metadata"


def test_no_key_and_no_customer_id_ever_reaches_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not in a good request, not in a refused one, not in a path a caller made
    up out of a key and an id."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    send_all(
        app(RateLimitConfig(per_second=1, burst=1)),
        [
            ("POST", "/predict_by_id", BEARER, {"customer_ids": IDS}),
            ("POST", "/predict_by_id", BEARER, {"customer_ids": IDS}),  # 429
            ("POST", f"/customers/{IDS[0]}/{KEY}", BEARER, None),
            ("POST", "/predict_by_id", {"Authorization": f"Bearer {IDS[1]}"}, None),
        ],
    )
    # the access lines as written (the test client's own log names the paths)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert len(lines(caplog)) == 4
    assert KEY not in text
    assert not any(cid in text for cid in IDS), text
    statuses = [line["status"] for line in lines(caplog)]
    assert statuses[:2] == [200, 429]
    assert lines(caplog)[2]["endpoint"] == "(other)"


def test_a_failing_endpoint_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert send_all(app(), [("POST", "/boom", BEARER, {})]) == [500]
    (line,) = lines(caplog)
    assert line["status"] == 500 and line["key"] == "crm"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/predict", "/predict"),
        ("/predict/", "/predict"),
        ("/outreach", "/outreach"),
        ("/C0000069", "(other)"),
        ("/predict/C0000069", "(other)"),
    ],
)
def test_only_known_routes_are_logged_by_name(path: str, logged: str) -> None:
    assert endpoint(path) == logged


def test_note_records_outside_a_request_is_a_no_op() -> None:
    note_records(5)  # no holder set: nothing to do, nothing raised


def test_the_handler_is_added_once_and_only_when_none_is_set() -> None:
    logger = logging.getLogger("propensity.access.test")
    access.ensure_handler(logger)
    access.ensure_handler(logger)
    assert len(logger.handlers) == 1 and logger.level == logging.INFO
    logger.handlers.clear()
