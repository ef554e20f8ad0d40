"""The console's sign-in: an API key, a signed session cookie, CSRF tokens.

A person signs in with an API key (serving.api.auth checks it against the same
key file and $PROPENSITY_API_KEYS as the API). The session is a cookie the
server signs, so any worker of the service accepts it and nothing is stored:

    <payload>.<signature>, payload = base64url(JSON {"n": key name,
    "e": expiry (unix seconds), "r": random nonce})

signed with HMAC-SHA256 under the key's stored hash (known to the server only,
never to the browser). Revoking the key (or changing the key file's line) ends
its sessions at the next request; the scopes are read from the key ring at each
request, never from the cookie. The cookie is HttpOnly, SameSite=Strict and
Secure when the console is reached over TLS.

CSRF: every form that changes something (sign-in, sign-out, forget, a customer
look-up, which would otherwise put an id in a URL) carries a token. Signed in,
the token is an HMAC of the session's nonce under the key's hash; before
sign-in, a random token in a cookie of its own that the form must repeat
(double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from serving.api.auth import ApiKey, KeyRing, matching

SESSION_COOKIE = "propensity_console"
SIGNIN_COOKIE = "propensity_console_signin"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    """A signed-in person: the key's name and scopes, and the form token."""

    key_name: str
    scopes: frozenset[str]
    expires: int
    csrf: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: ApiKey, message: str) -> str:
    return hmac.new(key.digest, message.encode(), hashlib.sha256).hexdigest()


def _csrf(key: ApiKey, nonce: str) -> str:
    return _sign(key, f"csrf:{nonce}")


def sign_in(ring: KeyRing, presented: str, now: float | None = None) -> str | None:
    """The session cookie's value for a valid key, or None (a wrong key)."""
    key = matching(ring.keys(), presented.strip()) if presented.strip() else None
    if key is None:
        return None
    now = time.time() if now is None else now
    body = {"n": key.name, "e": int(now) + SESSION_SECONDS, "r": secrets.token_hex(16)}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, payload)}"


def session(
    ring: KeyRing, cookie: str | None, now: float | None = None
) -> Session | None:
    """The session a cookie carries, or None: missing, malformed, forged,
    expired, or its key revoked."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    try:
        body = json.loads(_unb64(payload))
        name, expires, nonce = str(body["n"]), int(body["e"]), str(body["r"])
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time() if now is None else now
    if expires < now:
        return None
    named = {k.name: k for k in ring.keys()}  # noqa: SIM118 - a KeyRing method
    key = named.get(name)
    if key is None or not hmac.compare_digest(_sign(key, payload), signature):
        return None
    return Session(name, key.scopes, expires, _csrf(key, nonce))


def new_signin_token() -> str:
    """The pre-sign-in form token (also set as a cookie, see the module doc)."""
    return secrets.token_urlsafe(24)


def token_ok(expected: str | None, presented: str | None) -> bool:
    """A form's token against the one expected, in constant time."""
    return bool(expected and presented) and hmac.compare_digest(
        expected.encode(), presented.encode()
    )
