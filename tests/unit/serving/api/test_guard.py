"""The middleware as the service stacks it (serving.api.guard), from a config:
refused requests are logged and never reach the app, in the documented order."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from core.config import ApiConfig
from serving.api.access import LOGGER
from serving.api.guard import guard

KEY = "guard-key-0123456789abcdef"
reached: list[str] = []


async def model(scope, receive, send) -> None:
    reached.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def send_all(app, requests: list[tuple[str, dict, bytes]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.post(p, headers=h, content=b) for p, h, b in requests]

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPENSITY_API_KEYS", KEY)
    reached.clear()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines():
    """The access lines logged: guard() gives the logger its own stderr handler
    (not propagating), so collect on the logger itself; restored after."""
    logger = logging.getLogger(LOGGER)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    collect = Collect()
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(r.getMessage()) for r in collect.records]
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def test_keys_then_rate_then_size_each_refusal_logged(lines) -> None:
    api = ApiConfig(max_request_mb=0.000_1, rate_limit={"per_second": 1, "burst": 2})
    bearer = {"Authorization": f"Bearer {KEY}"}
    answers = send_all(
        guard(model, api),
        [
            ("/predict", {}, b"{}"),  # 401: no key, spends no token
            ("/predict", bearer, b"x" * 200),  # 413: a token spent, then too big
            ("/predict", bearer, b"{}"),  # 200
            ("/predict", bearer, b"{}"),  # 429: the burst of 2 is spent
        ],
    )
    assert [r.status_code for r in answers] == [401, 413, 200, 429]
    assert reached == ["/predict"]
    assert [(x["key"], x["status"]) for x in lines()] == [
        (None, 401),
        ("env-1", 413),
        ("env-1", 200),
        ("env-1", 429),
    ]


def test_no_rate_limit_and_no_access_log_when_the_config_says_so(lines) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    answers = send_all(
        guard(model, ApiConfig(access_log=False)), [("/predict", bearer, b"{}")] * 20
    )
    assert {r.status_code for r in answers} == {200}
    assert lines() == []
