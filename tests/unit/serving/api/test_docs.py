"""The docs page and spec (serving.api.docs): propensity's info and the API key
scheme on BentoML's spec, a page that loads nothing from another host, and the
middleware answering only GET / and /docs.json."""

from __future__ import annotations

import asyncio
import json
import re
from types import SimpleNamespace

import httpx

from serving.api.auth import ROUTE_SCOPES, SCOPES
from serving.api.docs import DESCRIPTION, SCHEME, TITLE, DocsPages, page, spec

BASE = {
    "openapi": "3.0.2",
    "info": {"title": "propensity", "version": "None", "description": "BentoML"},
    "components": {"schemas": {"X": {"type": "object"}}},
    "paths": {
        "/healthz": {"get": {"description": "probe"}},
        "/predict": {"post": {"description": "Probabilities."}},
        "/forget": {"post": {}},
        "/new_route": {"post": {"description": "n"}, "parameters": []},
    },
}
URL = re.compile(r"https?://")


def test_the_spec_carries_propensitys_info_and_the_key_scheme() -> None:
    out = spec(BASE, "1.2.3")
    assert out["info"] == {
        "title": TITLE,
        "version": "1.2.3",
        "description": DESCRIPTION,
    }
    assert "Authorization: Bearer <key>" in DESCRIPTION
    for scope in SCOPES:
        assert f"| `{scope}` |" in DESCRIPTION
    for route in ROUTE_SCOPES:
        assert f"`{route}`" in DESCRIPTION
    assert out["components"]["schemas"] == BASE["components"]["schemas"]
    assert out["components"]["securitySchemes"][SCHEME]["scheme"] == "bearer"
    paths = out["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/predict"]["post"]["security"] == [{SCHEME: []}]
    assert paths["/predict"]["post"]["description"].startswith("Probabilities.")
    assert paths["/predict"]["post"]["description"].endswith("`score` scope.")
    # not listed: admin, as the guard decides; non-operation keys kept as they were
    assert paths["/new_route"]["post"]["description"].endswith("`admin` scope.")
    assert paths["/forget"]["post"]["description"] == (
        "Needs an API key with the `admin` scope."
    )
    assert paths["/new_route"]["parameters"] == []
    assert not URL.search(json.dumps(out["info"]))
    assert BASE["info"]["title"] == "propensity"  # the input is left as it was


def test_the_page_loads_only_the_apis_own_files() -> None:
    html = page("1.2.3")
    assert "<title>propensity API 1.2.3</title>" in html
    assert not URL.search(html)
    assert "validatorUrl: null" in html
    assert set(re.findall(r'(?:src|href)="([^"]+)"', html)) == {
        "data:,",
        "./static_content/swagger-ui.css",
        "./static_content/swagger-ui-bundle.js",
        "./docs.json",
    }


def test_the_middleware_answers_the_docs_and_passes_the_rest() -> None:
    reached: list[str] = []

    async def bentoml_app(scope, receive, send) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"bentoml"})

    service = SimpleNamespace(
        bento=None, openapi_spec=SimpleNamespace(asdict=lambda: BASE)
    )
    app = DocsPages(bentoml_app, service)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [
                await c.get("/"),
                await c.get("/docs.json"),
                await c.post("/docs.json"),
                await c.get("/static_content/swagger-ui.css"),
            ]

    home, docs, posted, static = asyncio.run(go())
    assert home.headers["content-type"].startswith("text/html")
    assert "propensity API" in home.text
    assert docs.json()["info"]["title"] == TITLE
    assert docs.json()["info"]["version"] != "None"
    assert posted.text == static.text == "bentoml"
    assert reached == ["POST /docs.json", "GET /static_content/swagger-ui.css"]
