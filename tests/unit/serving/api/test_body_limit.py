"""The request size limit: 413 before the app reads a byte too many."""

from __future__ import annotations

import asyncio

import httpx

from serving.api.body_limit import BodyLimit
from tests.helpers import read_body


async def echo(scope, receive, send) -> None:
    """An app answering with the body it read."""
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def post(content, limit: int = 100) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=BodyLimit(echo, limit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/predict", content=content)

    return asyncio.run(go())


def chunks(*parts: bytes):
    async def gen():
        for part in parts:
            yield part

    return gen()


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    assert post(b"x" * 100).content == b"x" * 100
    # without a declared length (chunked), it is buffered and replayed
    assert post(chunks(b"a" * 60, b"b" * 40)).content == b"a" * 60 + b"b" * 40


def test_a_body_over_the_limit_is_413_saying_the_limit() -> None:
    r = post(b"x" * 101)
    assert r.status_code == 413
    assert "101 bytes exceeds the limit of 100 bytes" in r.json()["error"]
    assert "api.max_request_mb" in r.json()["error"]
    r = post(chunks(b"a" * 60, b"b" * 60))
    assert r.status_code == 413 and "limit of 100 bytes" in r.text
