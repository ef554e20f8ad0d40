"""Start-up that survives its faults: the loader's retries, the reason it gives
(credentials masked) and the gate's 503 (a tiny ASGI app stands in for the
service)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving.api import readiness
from serving.api.readiness import Loader, NotReadyGate, mask_credentials


async def ok(scope, receive, send) -> None:  # noqa: ANN001
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


def get(path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=NotReadyGate(ok))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(path)

    return asyncio.run(go())


class Flaky:
    """Fails `n` times with `error`, then succeeds."""

    def __init__(self, n: int, error: Exception) -> None:
        self.n, self.error, self.calls = n, error, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.n:
            raise self.error


def test_credentials_in_uris_are_masked() -> None:
    text = "cannot read http://alice:s3cret@mlflow:5000/api and postgresql://u@db/x"
    assert mask_credentials(text) == (
        "cannot read http://***@mlflow:5000/api and postgresql://***@db/x"
    )


def test_a_load_that_works_at_once_is_ready_without_a_thread() -> None:
    load = Flaky(0, RuntimeError("never"))
    loader = Loader(load, max_retry_s=1)
    loader.start()
    assert loader.loaded and loader.why_not() is None and load.calls == 1


def test_a_failing_load_is_retried_until_it_loads_saying_why_meanwhile() -> None:
    load = Flaky(2, RuntimeError("registry at http://u:pw@h:1 cannot be read"))
    loader = Loader(load, max_retry_s=0.05, first_retry_s=0.01)
    loader.start()
    assert loader.why_not() == (
        "not ready after 1 tries: RuntimeError: registry at http://***@h:1 "
        "cannot be read"
    )
    assert loader.wait(5), loader.why_not()
    assert load.calls == 3 and loader.why_not() is None


def test_the_gate_answers_503_with_the_reason_until_ready() -> None:
    loader = Loader(Flaky(10**6, OSError("store down")), max_retry_s=60)
    loader._try()
    readiness.track(loader)
    try:
        refused = get("/predict")
        assert refused.status_code == 503
        assert "store down" in refused.json()["error"]
        assert refused.headers["retry-after"] == "5"
        assert get("/readyz").text == "served"  # BentoML's /readyz says why
        loader.loaded = True
        assert get("/predict").text == "served"
    finally:
        readiness._current = None


@pytest.mark.parametrize("path", ["/livez", "/metrics", "/docs.json"])
def test_the_gate_lets_public_paths_through(path: str) -> None:
    readiness.track(Loader(Flaky(1, OSError("x")), max_retry_s=60))
    try:
        assert get(path).status_code == 200
    finally:
        readiness._current = None
