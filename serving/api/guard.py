"""The middleware in front of every endpoint, outermost first: the access log
(serving/api/access.py), the API key check (auth.py), the not-ready gate
(readiness.py: 503 saying why while the champions are not loaded), the per-key
rate limit (limits.py) and the request size limit (body_limit.py). So a request
refused for its key, its rate or its size is logged, and never reaches the model."""

from __future__ import annotations

from core.config import ApiConfig
from serving.api import access
from serving.api.auth import ASGIApp, BearerAuth, keyring_from_config
from serving.api.body_limit import BodyLimit
from serving.api.limits import KeyRateLimit, limiter_from_config
from serving.api.readiness import NotReadyGate


def guard(app: ASGIApp, api: ApiConfig) -> ASGIApp:
    """`app` behind the middleware `api` asks for (keys from the config and
    $PROPENSITY_API_KEYS; raises NoKeysError as keyring_from_config does)."""
    keyring = keyring_from_config(api)
    guarded: ASGIApp = BodyLimit(app, int(api.max_request_mb * 1_000_000))
    if api.rate_limit is not None:
        guarded = KeyRateLimit(guarded, limiter_from_config(api.rate_limit))
    guarded = NotReadyGate(guarded)
    if keyring is not None:
        guarded = BearerAuth(guarded, keyring)
    if api.access_log:
        access.ensure_handler()
        guarded = access.AccessLog(guarded)
    return guarded
