"""Start-up that survives its faults: the champions (and the online store)
loaded in the background, retried with backoff until they load.

A BentoML worker whose `__init__` raises is restarted forever (a crash loop that
never says why over HTTP). So the service's start-up only reads the config and
the keys; what needs the outside world (the MLflow registry or tracking server,
the champions' artifacts, the online store) is loaded by a `Loader`: tried once
at once, then, while it fails, again after 1, 2, 4 ... seconds (at most
`api.load_retry_max_s`). Meanwhile the worker lives (/livez 200), /readyz
answers 503 with the reason in its body, and every endpoint but the public ones
503 with the same reason (`NotReadyGate`); once a try succeeds the worker turns
ready, no restart needed.

The reason is the error of the last try, with the credentials of any URI in it
masked (/readyz is public).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable

from serving.api.auth import (
    PUBLIC_PATHS,
    PUBLIC_PREFIXES,
    ASGIApp,
    Receive,
    Scope,
    Send,
)

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
# MLflow's own HTTP retries (7, backoff up to 2 minutes) would hide an
# unreachable tracking server for minutes behind each try: the loader retries
# itself. Set only when the operator has not.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def mask_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URI in it replaced by `***@`."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


class Loader:
    """Runs `load` until it succeeds: once now, then in a daemon thread with
    exponential backoff. `reason` is None once loaded, else why not (yet)."""

    def __init__(
        self,
        load: Callable[[], None],
        max_retry_s: float,
        first_retry_s: float = FIRST_RETRY_S,
    ) -> None:
        self._load = load
        self._max_retry_s = max_retry_s
        self._first_retry_s = min(first_retry_s, max_retry_s)
        self._stop = threading.Event()
        self.attempts = 0
        self.loaded = False
        self.reason: str | None = "starting: the champions are not loaded yet"

    def start(self) -> None:
        """Try once in this thread; on failure keep trying in the background."""
        for name, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if not self._try():
            threading.Thread(
                target=self._retry, name="propensity-loader", daemon=True
            ).start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait until loaded (or `timeout_s`); whether it is."""
        deadline = time.monotonic() + timeout_s
        while not self.loaded and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.loaded

    def _try(self) -> bool:
        self.attempts += 1
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 - any failure: not ready, say why
            self.reason = mask_credentials(f"{type(exc).__name__}: {exc}".strip())
            return False
        self.loaded, self.reason = True, None
        if self.attempts > 1:
            log.warning("ready after %d tries", self.attempts)
        return True

    def _retry(self) -> None:
        delay = self._first_retry_s
        while not self._stop.is_set():
            log.error(
                "not ready (try %d): %s; trying again in %.0f s",
                self.attempts,
                self.reason,
                delay,
            )
            if self._stop.wait(delay) or self._try():
                return
            delay = min(delay * 2, self._max_retry_s)

    def why_not(self) -> str | None:
        """None when ready, else the reason, naming the tries so far."""
        if self.loaded:
            return None
        return f"not ready after {self.attempts} tries: {self.reason}"


# The loader of the service in this process (a BentoML worker builds one
# service), read by the middleware, which BentoML builds apart from it.
_current: Loader | None = None


def track(loader: Loader) -> Loader:
    """Make `loader` the one the gate of this process asks."""
    global _current
    _current = loader
    return loader


def why_not_ready() -> str | None:
    """Why this process's service is not ready, None when it is (or when no
    service runs here: nothing to gate)."""
    return None if _current is None else _current.why_not()


class NotReadyGate:
    """503 with the reason and Retry-After for every non-public request while
    the service is not ready (its endpoints would have no champions to call)."""

    def __init__(self, app: ASGIApp, retry_after_s: int = 5) -> None:
        self.app = app
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in PUBLIC_PATHS
            or path.startswith(PUBLIC_PREFIXES)
            or (reason := why_not_ready()) is None
        ):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": f"the service is {reason}"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self.retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
