"""The API's docs page (/) and its OpenAPI spec (/docs.json), made propensity's.

BentoML 1.4 serves at / a Swagger page that loads Google Tag Manager from the
network, and a spec whose info is BentoML's default README (Slack and Twitter
badges from badge services, "created with BentoML", version `None`, BentoML's
contact). `DocsPages`, an ASGI middleware, answers GET / and /docs.json itself:
the page loads only the Swagger UI files BentoML ships (served by the API under
/static_content, so it works offline), and the spec carries propensity's title,
the installed package's version, a description and the Bearer API key scheme
with the scope each endpoint needs (Swagger's Authorize button). Every other
request goes on to BentoML untouched.
"""

from __future__ import annotations

import html
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.responses import Response

from serving.api.auth import (
    ROUTE_SCOPES,
    SCOPES,
    ASGIApp,
    Receive,
    Scope,
    Send,
    is_public,
    required_scope,
)

TITLE = "propensity API"
PAGE, SPEC = "/", "/docs.json"
# the name of the API key scheme in the spec's components
SCHEME = "apiKey"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_PROBES = "`/healthz`, `/livez`, `/readyz`"


def _scope_table() -> str:
    rows = [
        f"| `{scope}` | "
        + ", ".join(f"`{route}`" for route, s in ROUTE_SCOPES.items() if s == scope)
        + (" and any other route" if scope == SCOPES[-1] else "")
        + " |"
        for scope in SCOPES
    ]
    return "\n".join(["| scope | endpoints |", "|---|---|", *rows])


DESCRIPTION = f"""\
Churn, purchase and service-request propensities from the champion models of the
MLflow registry: probabilities for feature records (`/predict`) or customer ids
(`/predict_by_id`, from the nightly job's online store), the reasons behind a
score (`/explain`), whom to contact for a campaign (`/outreach`) and its readout
(`/campaign_report`), the models served (`/metadata`) and erasure (`/forget`).

## Authentication

Every endpoint but the health probes ({_PROBES}), `/metrics` and these docs
needs an API key in the header `Authorization: Bearer <key>`; press **Authorize**
to try the endpoints from this page. `propensity api-key new --name NAME --scopes
score` (`make api-key NAME=...`) creates a key and prints it once. A missing or
wrong key gets 401; a key without the scope an endpoint needs gets 403, naming
the scope.

{_scope_table()}
"""


def package_version(fallback: str | None = None) -> str:
    """The installed propensity's version; in a Bento (which carries the source,
    not the package) `fallback`, the Bento's version, else "unknown"."""
    try:
        return version("propensity")
    except PackageNotFoundError:
        return fallback or "unknown"


def spec(base: dict[str, Any], api_version: str) -> dict[str, Any]:
    """BentoML's spec (`Service.openapi_spec.asdict()`) with propensity's info
    and the API key scheme: each operation says whether it needs a key and
    which scope."""
    out = {**base, "info": {"title": TITLE, "version": api_version}}
    out["info"]["description"] = DESCRIPTION
    components = dict(out.get("components") or {})
    components["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`propensity api-key new`), "
            "as `Authorization: Bearer <key>`.",
        }
    }
    out["components"] = components
    out["paths"] = {
        path: {
            method: _secured(path, op) if method in _METHODS else op
            for method, op in item.items()
        }
        for path, item in base.get("paths", {}).items()
    }
    return out


def _secured(path: str, op: dict[str, Any]) -> dict[str, Any]:
    if is_public(path):
        return {**op, "security": []}
    scope = required_scope(path)
    note = f"Needs an API key with the `{scope}` scope."
    text = op.get("description")
    return {
        **op,
        "security": [{SCHEME: []}],
        "description": f"{text}\n\n{note}" if text else note,
    }


def page(api_version: str) -> str:
    """The Swagger page: BentoML's own Swagger UI files, relative URLs only, no
    spec validator (Swagger UI would fetch a badge from validator.swagger.io)."""
    title = html.escape(f"{TITLE} {api_version}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="./static_content/swagger-ui.css">
</head>
<body>
<main id="swagger-ui">
<h1>{title}</h1>
<p>The OpenAPI description is at <a href="./docs.json">/docs.json</a>.</p>
</main>
<script src="./static_content/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "./docs.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
"""


class DocsPages:
    """Answers GET / (the page) and GET /docs.json (the spec) in front of
    BentoML's own; both are built once per worker, at the first request."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._responses: dict[str, tuple[bytes, str]] = {}

    def _build(self) -> dict[str, tuple[bytes, str]]:
        bento = getattr(self.service, "bento", None)
        api_version = package_version(bento.tag.version if bento else None)
        document = spec(self.service.openapi_spec.asdict(), api_version)
        return {
            PAGE: (page(api_version).encode(), "text/html"),
            SPEC: (json.dumps(document).encode(), "application/json"),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("GET", "HEAD")
            or path not in (PAGE, SPEC)
        ):
            await self.app(scope, receive, send)
            return
        if not self._responses:
            self._responses = self._build()
        body, media_type = self._responses[path]
        await Response(body, media_type=media_type)(scope, receive, send)
