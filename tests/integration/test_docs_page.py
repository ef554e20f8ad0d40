"""The API's docs page and spec on a real `bentoml serve`: propensity's title,
version, description and authentication, nothing loaded from another host."""

from __future__ import annotations

import re
from importlib.metadata import version
from urllib.parse import urlsplit

import httpx
import pytest

from serving.api.auth import SCOPES
from tests.helpers import Server

pytestmark = pytest.mark.integration


def _foreign_urls(text: str, host: str) -> list[str]:
    return [
        url
        for url in re.findall(r"https?://[^\s\"'<>)]+", text)
        if urlsplit(url).netloc != host
    ]


def test_the_docs_page_is_propensitys_and_loads_nothing_from_the_network(
    server: Server,
) -> None:
    host = urlsplit(server.url).netloc
    home = httpx.get(f"{server.url}/")
    assert home.status_code == 200
    assert f"<title>propensity API {version('propensity')}</title>" in home.text
    assert "created with BentoML" not in home.text
    assert _foreign_urls(home.text, host) == []
    # every file the page names is served by the API itself
    for ref in re.findall(r'(?:src|href)="\./([^"]+)"', home.text):
        assert httpx.get(f"{server.url}/{ref}").status_code == 200, ref
    assert httpx.get(f"{server.url}/docs", follow_redirects=True).text == home.text


def test_the_spec_says_what_the_api_is_and_how_to_authenticate(server: Server) -> None:
    response = httpx.get(f"{server.url}/docs.json")
    doc = response.json()
    info = doc["info"]
    assert info["title"] == "propensity API"
    assert info["version"] == version("propensity")
    assert "Authorization: Bearer <key>" in info["description"]
    assert all(f"`{scope}`" in info["description"] for scope in SCOPES)
    assert "contact" not in info
    assert _foreign_urls(response.text, urlsplit(server.url).netloc) == []
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert "`score` scope" in doc["paths"]["/predict"]["post"]["description"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
