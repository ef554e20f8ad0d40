"""API keys: the key file, the key ring and the ASGI middleware that checks them.

Every request needs `Authorization: Bearer <key>` except the public paths: the
health probes (/healthz, /livez, /readyz), /metrics and the API docs (the
Swagger page at /, /docs.json and the page's static files), which reveal no
data, and the web console under /console, which signs people in with these
keys and checks its own session (serving.console). A missing or wrong key gets
401 with `WWW-Authenticate: Bearer` and a body that says nothing else.

Keys are random 256-bit tokens (`secrets.token_urlsafe(32)`), so a salted SHA-256
is enough to store them: a slow password hash guards low-entropy secrets and would
cost milliseconds per request here. The key file holds one key per line,
`name:salt_hex:sha256_hex(salt + key)`, `#` starting a comment. Keys from
$PROPENSITY_API_KEYS (comma-separated plaintext, for development) are hashed the
same way when read. A presented key is compared with every configured key, in
constant time and without stopping at a match, so timing reveals neither which
key matched nor how close a guess came. Keys are never logged.

Keys carry scopes: `score` (predict, predict_by_id, explain), `outreach`
(outreach, campaign_report), `ingest` (events: real-time events, serving.ingest), and
`admin` (metadata, forget, and any other route). A key without the scope a route
needs gets 403, saying which scope is missing. A key file line may end with
`:scope,scope`; a line without one (written before scopes existed) and keys from
$PROPENSITY_API_KEYS hold every scope.

The file is re-read when it changes (its mtime, size or inode), so adding and
revoking keys needs no restart; a file that turns invalid is logged and the last
valid keys stay in force.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.atomic import atomic_write
from core.config import ApiConfig
from core.config.secrets import API_KEYS_ENV, api_keys, split_api_keys
from core.watch import WatchedFile

log = logging.getLogger(__name__)

KEYS_ENV = API_KEYS_ENV
# the web console (serving.console) signs people in with the same keys and
# checks its own session cookie on every page: no Bearer header from a browser
CONSOLE = "/console"
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/",
        "/docs",
        "/docs/",
        "/docs.json",
        CONSOLE,
    }
)
PUBLIC_PREFIXES = ("/static_content/", CONSOLE + "/")
# where BearerAuth leaves the name of the key a request carried, in the ASGI
# scope, for the middleware inside it (limits) and around it (the access log)
KEY_NAME = "propensity.key_name"
SALT_BYTES = 16
# the key file holds hashes only, but nobody else needs to read them
KEY_FILE_MODE = 0o600
SCORE, OUTREACH, INGEST, ADMIN = "score", "outreach", "ingest", "admin"
SCOPES = (SCORE, OUTREACH, INGEST, ADMIN)
# the scope each route needs; any other route not public needs admin
ROUTE_SCOPES = {
    "/predict": SCORE,
    "/predict_by_id": SCORE,
    "/explain": SCORE,
    "/outreach": OUTREACH,
    "/campaign_report": OUTREACH,
    "/events": INGEST,
    "/metadata": ADMIN,
    "/forget": ADMIN,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]+$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class KeyFileError(ValueError):
    """The key file is unreadable or has a bad line; the message names file and line."""


class NoKeysError(ValueError):
    """No API key is configured and the config does not allow that."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its name, salt, SHA-256 of salt + key (never the key) and
    the scopes it grants."""

    name: str
    salt: bytes
    digest: bytes
    scopes: frozenset[str] = frozenset(SCOPES)

    def line(self) -> str:
        scopes = ",".join(s for s in SCOPES if s in self.scopes)
        return f"{self.name}:{self.salt.hex()}:{self.digest.hex()}:{scopes}"


def parse_scopes(text: str, where: str) -> frozenset[str]:
    """Comma-separated scopes; ValueError naming `where` and the known scopes."""
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(
            f"{where}: unknown or no scope {', '.join(unknown) or repr(text)}; "
            f"expected some of {', '.join(SCOPES)}"
        )
    return frozenset(scopes)


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _digest(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode()).digest()


def hash_key(
    name: str,
    key: str,
    salt: bytes | None = None,
    scopes: frozenset[str] = frozenset(SCOPES),
) -> ApiKey:
    if not _NAME.match(name):
        raise ValueError(
            f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return ApiKey(name, salt, _digest(salt, key), scopes)


def parse_keys(text: str, source: str) -> list[ApiKey]:
    """The keys in a key file's text; a bad line raises KeyFileError naming
    `source:line`."""
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        parts = line.split(":")
        if len(parts) not in (3, 4):
            raise KeyFileError(
                f"{where}: expected name:salt_hex:sha256_hex[:scopes], got "
                f"{len(parts)} field(s)"
            )
        name, salt, digest = parts[:3]
        try:
            scopes = (
                parse_scopes(parts[3], where) if len(parts) == 4 else frozenset(SCOPES)
            )
        except ValueError as exc:
            raise KeyFileError(str(exc)) from exc
        if not _NAME.match(name):
            raise KeyFileError(f"{where}: bad key name {name!r}")
        if name in seen:
            raise KeyFileError(f"{where}: key name {name!r} appears twice")
        if len(salt) < 2 * SALT_BYTES or len(salt) % 2 or not _HEX.match(salt):
            raise KeyFileError(
                f"{where}: salt must be at least {SALT_BYTES} bytes of lowercase hex"
            )
        if len(digest) != 64 or not _HEX.match(digest):
            raise KeyFileError(f"{where}: hash must be 64 lowercase hex digits")
        seen.add(name)
        keys.append(ApiKey(name, bytes.fromhex(salt), bytes.fromhex(digest), scopes))
    return keys


def read_key_file(path: Path) -> list[ApiKey]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file: {exc}") from exc
    return parse_keys(text, str(path))


def env_keys(value: str | Iterable[SecretStr] | None) -> list[ApiKey]:
    """Keys from $PROPENSITY_API_KEYS (as core.config.secrets.api_keys reads them,
    or its comma-separated text), named env-1, env-2, ... in order."""
    plain = split_api_keys(value) if value is None or isinstance(value, str) else value
    return [
        hash_key(f"env-{i}", key.get_secret_value())
        for i, key in enumerate(plain, start=1)
    ]


def _write_atomically(path: Path, text: str) -> None:
    """Replace the key file with `text` (mode 0600 from the start), atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text), mode=KEY_FILE_MODE)


def add_key(path: Path, name: str, scopes: frozenset[str] = frozenset({SCORE})) -> str:
    """A new key named `name` with `scopes`, its hash appended to the key file;
    the key itself is returned for showing once and is stored nowhere."""
    text = path.read_text() if path.exists() else ""
    if name in {k.name for k in parse_keys(text, str(path))}:
        raise KeyFileError(f"{path}: a key named {name!r} exists; pick another name")
    key = new_key()
    if text and not text.endswith("\n"):
        text += "\n"
    _write_atomically(path, text + hash_key(name, key, scopes=scopes).line() + "\n")
    return key


def remove_key(path: Path, name: str) -> None:
    """Drop the line of the key named `name` from the key file (comments stay)."""
    text = path.read_text() if path.exists() else ""
    if name not in {k.name for k in parse_keys(text, str(path))}:
        raise KeyFileError(f"{path}: no key named {name!r}")
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if line.strip().startswith("#") or line.split(":", 1)[0].strip() != name
    ]
    _write_atomically(path, "".join(kept))


def matching(keys: Iterable[ApiKey], presented: str) -> ApiKey | None:
    """The key equal to `presented`, or None. Every key is compared
    (constant-time), whatever matched first."""
    found = None
    for key in keys:
        if hmac.compare_digest(_digest(key.salt, presented), key.digest):
            found = key
    return found


def match(keys: Iterable[ApiKey], presented: str) -> str | None:
    """The name of the key equal to `presented`, or None (see `matching`)."""
    found = matching(keys, presented)
    return None if found is None else found.name


def is_public(path: str) -> bool:
    """A path every caller may reach without a key (probes, metrics, docs)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def required_scope(path: str) -> str:
    """The scope a (non-public) route needs: admin unless listed."""
    return ROUTE_SCOPES.get(path.rstrip("/") or "/", ADMIN)


class KeyRing:
    """The keys in force: the environment's, fixed at start, and the key file's,
    re-read whenever the file changes (core.watch.WatchedFile).

    A key file that is invalid at start raises KeyFileError; one missing at start
    holds no key. Later, a file that turns invalid or goes missing is logged and
    the keys last read from it stay in force."""

    def __init__(self, env: list[ApiKey], path: Path | None = None) -> None:
        self.env = env
        self.path = path
        self._file: WatchedFile[list[ApiKey]] | None = None
        if path is not None:
            self._file = WatchedFile(path, self._read, self._gone)
            self._file.get()

    def keys(self) -> list[ApiKey]:
        return [*self.env, *(self._file.get() if self._file is not None else [])]

    def _read(self, path: Path) -> list[ApiKey]:
        last = self._file.value if self._file is not None else None
        try:
            keys = read_key_file(path)
        except KeyFileError as exc:
            if last is None:  # at start: refuse, naming the line
                raise
            log.error("%s; keeping the %d key(s) last read", exc, len(last))
            return last
        if last is not None:
            log.info("API key file %s re-read: %d key(s)", path, len(keys))
        return keys

    def _gone(self, path: Path, error: OSError) -> list[ApiKey]:
        last = self._file.value if self._file is not None else None
        if last is None:  # none at start: the environment's keys only
            return []
        log.error(
            "API key file %s is gone; keeping the %d key(s) last read from it",
            path,
            len(last),
        )
        return last


def keyring_from_config(
    api: ApiConfig, environ: Mapping[str, str] | None = None
) -> KeyRing | None:
    """The key ring for the config and environment; None when no key is set and
    `api.require_keys` is false (the API is then open, with a warning). Raises
    NoKeysError when no key is set otherwise."""
    ring = KeyRing(env_keys(api_keys(environ)), api.keys_file)
    if api.keys_file is not None and not api.keys_file.exists() and ring.env:
        log.warning(
            "API key file %s not found: only $%s keys are accepted",
            api.keys_file,
            KEYS_ENV,
        )
    if ring.keys():
        return ring
    if api.require_keys:
        where = (
            f"the key file {api.keys_file} holds none"
            if api.keys_file is not None
            else "api.keys_file is not set in the config"
        )
        raise NoKeysError(
            f"no API key configured ({where}, ${KEYS_ENV} is empty): create one "
            "with `propensity api-key new --name NAME`, or set "
            f"{KEYS_ENV}=key1,key2 for development; `api: {{require_keys: false}}` "
            "in the config serves without keys"
        )
    log.warning(
        "no API key configured and api.require_keys is false: every endpoint is "
        "open to anyone who can reach the server"
    )
    return None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


UNAUTHORIZED_BODY = json.dumps({"error": "unauthorized"}).encode()


def forbidden_body(key: ApiKey, scope: str) -> bytes:
    return json.dumps(
        {"error": f"forbidden: the key {key.name!r} lacks the {scope!r} scope"}
    ).encode()


class BearerAuth:
    """Pure ASGI middleware: pass public paths and requests carrying a configured
    key with the route's scope; answer a missing or wrong key 401, a key without
    the scope 403 (HTTP), or close with 1008 (WebSocket)."""

    def __init__(
        self,
        app: ASGIApp,
        keyring: KeyRing,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes

    def _public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    def check(self, scope: Scope) -> tuple[int, bytes]:
        """(200, b"") when the request may pass, else the status and body. The
        name of a matched key is left in scope[KEY_NAME] (for the rate limit and
        the access log; never the key)."""
        path = scope.get("path", "")
        if self._public(path):
            return 200, b""
        token = _bearer(scope)
        key = None if token is None else matching(self.keyring.keys(), token)
        if key is None:
            return 401, UNAUTHORIZED_BODY
        scope[KEY_NAME] = key.name
        needed = required_scope(path)
        if needed not in key.scopes:
            return 403, forbidden_body(key, needed)
        return 200, b""

    def allowed(self, scope: Scope) -> bool:
        return self.check(scope)[0] == 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        status, body = self.check(scope)
        if status == 200:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await send_json(send, status, body, headers)


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a request from middleware: a JSON body with its length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
