"""What `bentoml serve` runs the API on: uvicorn takes libuv's event loop
(uvloop) and the C HTTP parser (httptools) when they are installed, and the
project installs them (pyproject.toml, serving/requirements.txt). Without
them every request pays asyncio's and h11's pure Python on the one event loop
that predict_by_id shares with POST /events."""

from __future__ import annotations


def test_uvicorn_picks_the_c_http_parser():
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    assert AutoHTTPProtocol.__name__ == "HttpToolsProtocol"


def test_uvicorn_picks_uvloop():
    from uvicorn.loops.auto import auto_loop_factory

    loop = auto_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop"), type(loop)
    finally:
        loop.close()
