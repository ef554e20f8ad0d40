"""The web console: an ASGI app (Starlette, Jinja2 templates rendered on the
server, no JavaScript) for the people who act on the scores.

Mounted at `/console` beside the BentoML API (serving.api.service) and served
alone by `propensity console`; both read the same config. Pages, and the scope
of the API key a person signed in with that each needs:

| page | scope | what it reads (serving.console.sources) |
|---|---|---|
| Overview | score | the last nightly run's status, the nightly aggregates |
| Models | score | the aggregates' champions, outcome series, promotions |
| Customer | score | one online-store row, its contacts; the champions' reasons |
| Campaigns | outreach | the contact log, the aggregates' readouts |
| Forget | admin | serving.privacy.forget |

Sign-in, the session cookie and CSRF tokens: serving.console.session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

from core.config import ProjectConfig
from core.exitcodes import ExitCode
from serving.api.auth import ADMIN, OUTREACH, SCORE, KeyRing, keyring_from_config
from serving.console import pages, session
from serving.console.sources import Sources

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
PREFIX = "/console"
# the navigation: (path, label, scope)
NAV = (
    ("/overview", "Overview", SCORE),
    ("/models", "Models", SCORE),
    ("/customer", "Customer", SCORE),
    ("/campaigns", "Campaigns", OUTREACH),
    ("/forget", "Forget", ADMIN),
)
# no framing, no scripts, nothing from other origins; styles inline
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Console:
    """The console's state: the config, its key ring and sources, the templates."""

    def __init__(self, config: ProjectConfig, root: Path) -> None:
        self.config = config
        self.ring: KeyRing | None = keyring_from_config(config.api)
        self.sources = Sources(config, root)
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.globals["exit_name"] = _exit_name

    # -- sessions ---------------------------------------------------------

    def session(self, request: Request) -> session.Session | None:
        if self.ring is None:
            return None
        return session.session(self.ring, request.cookies.get(session.SESSION_COOKIE))

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        who: session.Session | None = None,
    ) -> Response:
        base = request.scope.get("root_path", "")
        nav = [
            (base + path, label, path == context.get("active"))
            for path, label, scope in NAV
            if who is not None and who.allows(scope)
        ]
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                "base": base,
                "nav": nav,
                "who": who,
                "csrf_field": session.CSRF_FIELD,
                **context,
            },
            status_code=status,
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def cookie(
        self,
        response: Response,
        request: Request,
        name: str,
        value: str,
        max_age: int | None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=request.scope.get("root_path", "") or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response, request: Request, name: str) -> None:
        """Drop a cookie, with the flags it was set with."""
        self.cookie(response, request, name, "", 0)


def _exit_name(code: object) -> str:
    try:
        return ExitCode(int(code)).name.lower()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "unknown"


# -- handlers -------------------------------------------------------------------

Handler = Callable[[Request], Any]


def _console(request: Request) -> Console:
    return request.app.state.console


def _guarded(
    scope: str | None, page: Callable[[Console, Request, session.Session], Any]
):
    """A page that needs a session whose key holds `scope` (None: any signed-in
    key): else the sign-in page (no session) or 403 naming the scope (no data
    either way). A POST must carry the session's CSRF token."""

    async def handler(request: Request) -> Response:
        console = _console(request)
        who = console.session(request)
        if who is None:
            return RedirectResponse(request.scope.get("root_path", "") + "/signin", 303)
        if scope is not None and not who.allows(scope):
            return console.render(
                request,
                "denied.html",
                {"title": "Not allowed", "scope": scope},
                status=403,
                who=who,
            )
        if request.method == "POST":
            form = await request.form()
            if not session.token_ok(who.csrf, str(form.get(session.CSRF_FIELD, ""))):
                return console.render(
                    request,
                    "denied.html",
                    {"title": "Form expired", "csrf": True},
                    status=403,
                    who=who,
                )
            request.state.form = form
        return await page(console, request, who)

    return handler


async def home(request: Request) -> Response:
    base = request.scope.get("root_path", "")
    who = _console(request).session(request)
    if who is None:
        return RedirectResponse(base + "/signin", 303)
    first = next((p for p, _, s in NAV if who.allows(s)), "/signin")
    return RedirectResponse(base + first, 303)


async def signin_form(
    request: Request, error: str | None = None, status: int = 200
) -> Response:
    console = _console(request)
    token = session.new_signin_token()
    response = console.render(
        request,
        "signin.html",
        {
            "title": "Sign in",
            "token": token,
            "error": error,
            "no_keys": console.ring is None,
        },
        status=status,
    )
    console.cookie(response, request, session.SIGNIN_COOKIE, token, 600)
    return response


async def signin(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    expected = request.cookies.get(session.SIGNIN_COOKIE)
    if not session.token_ok(expected, str(form.get(session.CSRF_FIELD, ""))):
        return await signin_form(request, "The form expired: sign in again.", 403)
    cookie = (
        None
        if console.ring is None
        else session.sign_in(console.ring, str(form.get("api_key", "")))
    )
    if cookie is None:
        return await signin_form(request, "That API key is not valid.", 401)
    response = RedirectResponse(request.scope.get("root_path", "") + "/", 303)
    console.cookie(
        response, request, session.SESSION_COOKIE, cookie, session.SESSION_SECONDS
    )
    console.clear(response, request, session.SIGNIN_COOKIE)
    return response


async def signout(console: Console, request: Request, who: session.Session) -> Response:
    response = RedirectResponse(request.scope.get("root_path", "") + "/signin", 303)
    console.clear(response, request, session.SESSION_COOKIE)
    return response


def _page(template: str, build: Callable[[Console, Request, session.Session], Any]):
    async def page(
        console: Console, request: Request, who: session.Session
    ) -> Response:
        context = await build(console, request, who)
        status = context.pop("http_status", 200)
        return console.render(request, template, context, status=status, who=who)

    return page


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", _guarded(None, signout), methods=["POST"]),
        Route("/overview", _guarded(SCORE, _page("overview.html", pages.overview))),
        Route("/models", _guarded(SCORE, _page("models.html", pages.models))),
        Route(
            "/customer",
            _guarded(SCORE, _page("customer.html", pages.customer)),
            methods=["GET", "POST"],
        ),
        Route(
            "/campaigns", _guarded(OUTREACH, _page("campaigns.html", pages.campaigns))
        ),
        Route(
            "/campaigns/{campaign_id}",
            _guarded(OUTREACH, _page("campaign.html", pages.campaign)),
        ),
        Route(
            "/forget",
            _guarded(ADMIN, _page("forget.html", pages.forget)),
            methods=["GET", "POST"],
        ),
    ]


def create_app(config: ProjectConfig, root: Path) -> Starlette:
    """The console for `config` (its folder `root`), its routes at its root:
    mount it (at /console)."""
    app = Starlette(routes=routes())
    app.state.console = Console(config, root)
    return app


def standalone(config: ProjectConfig, root: Path) -> Starlette:
    """The console alone (`propensity console`): mounted at /console, `/` sends
    there."""

    async def to_console(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", 303)

    return Starlette(
        routes=[Route("/", to_console), Mount(PREFIX, app=create_app(config, root))]
    )
