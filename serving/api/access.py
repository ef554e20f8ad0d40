"""The access log: one JSON line per API request on the logger
`propensity.access`, naming the key's name, the endpoint, the number of records
in the request, the status and the latency. Never a key, never a customer id,
never a body: an unknown path is logged as `(other)`, since a path is whatever
the caller typed.

    {"key": "crm-2026-11", "method": "POST", "endpoint": "/predict_by_id",
     "records": 250, "status": 200, "latency_ms": 41.7}

`key` is null when the request carried no valid key (a 401). `records` is the
length of `customers` or `customer_ids` as the endpoint received it, null when
the request never reached an endpoint (401, 403, 413, 429, a body that failed
validation) or has none (metadata, campaign_report). The endpoints report it
through `note_records` (a context variable the middleware sets per request:
BentoML runs a sync endpoint in a thread with a copy of the request's context).
Public paths (health probes, /metrics, the docs) are not logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from serving.api.auth import (
    KEY_NAME,
    PUBLIC_PATHS,
    ROUTE_SCOPES,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    is_public,
)

LOGGER = "propensity.access"
log = logging.getLogger(LOGGER)
OTHER = "(other)"
_KNOWN = frozenset(ROUTE_SCOPES) | PUBLIC_PATHS

# the request's record count: a one-item list the endpoint fills in
_records: contextvars.ContextVar[list[int | None] | None] = contextvars.ContextVar(
    "propensity_access_records", default=None
)


def note_records(n: int) -> None:
    """Tell the access log how many records the current request holds."""
    holder = _records.get()
    if holder is not None:
        holder[0] = n


def endpoint(path: str) -> str:
    """The route as logged: a known route, else `(other)`."""
    route = path.rstrip("/") or "/"
    return route if route in _KNOWN else OTHER


def line(
    key: str | None,
    method: str,
    path: str,
    records: int | None,
    status: int,
    latency_s: float,
) -> str:
    return json.dumps(
        {
            "key": key,
            "method": method,
            "endpoint": endpoint(path),
            "records": records,
            "status": status,
            "latency_ms": round(latency_s * 1000, 1),
        }
    )


def ensure_handler(logger: logging.Logger = log) -> None:
    """Lines to stderr (the server's log) unless logging was set up for the
    logger already: BentoML configures its own loggers, not ours."""
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class AccessLog:
    """Pure ASGI middleware, outermost: times the request, keeps its status, and
    logs the line once the app is done (or failed: status 500)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        holder: list[int | None] = [None]
        token = _records.set(holder)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _records.reset(token)
            self.log.info(
                line(
                    scope.get(KEY_NAME),
                    scope.get("method", ""),
                    scope.get("path", ""),
                    holder[0],
                    status,
                    time.perf_counter() - start,
                )
            )
