"""API keys: the key file, hashing, the key ring, the middleware and the CLI,
without BentoML (a tiny ASGI app stands in for the service)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import stat
from pathlib import Path

import httpx
import pytest

from cli.main import main
from core.config import ApiConfig, load_config
from serving.api import auth
from serving.api.auth import (
    BearerAuth,
    KeyFileError,
    KeyRing,
    NoKeysError,
    add_key,
    env_keys,
    hash_key,
    keyring_from_config,
    match,
    parse_keys,
    read_key_file,
    remove_key,
)
from tests.helpers import NEEDS, write_config

SALT = bytes(range(16))


async def hello(scope, receive, send) -> None:
    """The protected app: 200 with a body naming the path."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


class Client:
    """Synchronous requests to an ASGI app through httpx.ASGITransport."""

    def __init__(self, app: BearerAuth) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(*keys: str, path: Path | None = None) -> Client:
    ring = KeyRing([hash_key(f"k{i}", k) for i, k in enumerate(keys)], path)
    return Client(BearerAuth(hello, ring))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- hashing and the key file -------------------------------------------------


def test_hash_is_sha256_of_salt_and_key_and_round_trips_through_a_line() -> None:
    key = hash_key("crm", "s3cret", salt=SALT)
    assert key.digest == hashlib.sha256(SALT + b"s3cret").digest()
    assert (
        key.line() == f"crm:{SALT.hex()}:{key.digest.hex()}:score,outreach,ingest,admin"
    )
    assert parse_keys(key.line(), "f") == [key]
    scoped = hash_key("crm", "s3cret", salt=SALT, scopes=frozenset({"outreach"}))
    assert scoped.line().endswith(":outreach")
    assert parse_keys(scoped.line(), "f") == [scoped]
    # a line from before scopes: every scope
    old = f"crm:{SALT.hex()}:{key.digest.hex()}"
    assert parse_keys(old, "f")[0].scopes == {"score", "outreach", "ingest", "admin"}
    assert hash_key("crm", "s3cret").salt != hash_key("crm", "s3cret").salt


def test_parse_skips_comments_and_blank_lines() -> None:
    a, b = hash_key("a", "1"), hash_key("b.2_x-y", "2")
    text = f"# keys\n\n{a.line()}\n   # old one removed\n{b.line()}  \n"
    assert parse_keys(text, "keys.txt") == [a, b]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("only-a-name", "expected name:salt_hex:sha256_hex[:scopes], got 1 field(s)"),
        (f"a:{SALT.hex()}:{'0' * 64}:score:x", "got 5 field(s)"),
        (f"a:{SALT.hex()}:{'0' * 64}:score,extra", "unknown or no scope extra"),
        (f"a:{SALT.hex()}:{'0' * 64}:", "unknown or no scope"),
        (f"bad name:{SALT.hex()}:{'0' * 64}", "bad key name 'bad name'"),
        (f"a:abcd:{'0' * 64}", "salt must be at least 16 bytes"),
        (f"a:{'z' * 32}:{'0' * 64}", "salt must be at least 16 bytes"),
        (f"a:{SALT.hex()}:{'0' * 63}", "hash must be 64 lowercase hex digits"),
        (f"a:{SALT.hex()}:{'A' * 64}", "hash must be 64 lowercase hex digits"),
    ],
)
def test_a_bad_line_is_named_with_file_and_line_number(line: str, message: str) -> None:
    text = f"# header\n{hash_key('ok', 'k').line()}\n{line}\n"
    with pytest.raises(KeyFileError, match=f"^keys.txt:3: .*{re.escape(message)}"):
        parse_keys(text, "keys.txt")


def test_a_name_twice_is_an_error() -> None:
    text = f"{hash_key('a', '1').line()}\n{hash_key('a', '2').line()}\n"
    with pytest.raises(KeyFileError, match="keys.txt:2: key name 'a' appears twice"):
        parse_keys(text, "keys.txt")


def test_env_keys_are_hashed_and_named_in_order() -> None:
    keys = env_keys(" one, ,two ")
    assert [k.name for k in keys] == ["env-1", "env-2"]
    assert match(keys, "two") == "env-2" and match(keys, "one") == "env-1"
    assert match(keys, " two") is None and env_keys(None) == env_keys("") == []


def test_add_key_appends_a_hash_atomically_and_returns_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "api-keys.txt"
    first = add_key(path, "crm")
    path.write_text(path.read_text() + "# a comment, no newline")
    second = add_key(path, "batch")
    assert len(first) >= 43 and first != second
    text = path.read_text()
    assert first not in text and second not in text
    keys = read_key_file(path)
    assert [k.name for k in keys] == ["crm", "batch"]
    assert match(keys, first) == "crm" and match(keys, second) == "batch"
    assert "# a comment, no newline\n" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["api-keys.txt"]
    with pytest.raises(KeyFileError, match="a key named 'crm' exists"):
        add_key(path, "crm")


def test_remove_key_drops_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.txt"
    path.write_text("# crm: the CRM's key\n")
    crm, batch = add_key(path, "crm"), add_key(path, "batch")
    remove_key(path, "crm")
    assert path.read_text().startswith("# crm: the CRM's key\n")
    keys = read_key_file(path)
    assert match(keys, crm) is None and match(keys, batch) == "batch"
    with pytest.raises(KeyFileError, match="no key named 'crm'"):
        remove_key(path, "crm")


# --- comparison ---------------------------------------------------------------


def test_every_key_is_compared_in_constant_time_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    keys = [hash_key(f"k{i}", f"key-{i}") for i in range(5)]
    assert match(keys, "key-0") == "k0"
    assert len(calls) == 5
    calls.clear()
    assert match(keys, "nope") is None and len(calls) == 5


# --- the middleware -----------------------------------------------------------


def test_missing_or_wrong_key_is_401_saying_nothing_else() -> None:
    c = client("right-key")
    for headers in (
        {},
        bearer("wrong-key"),
        {"Authorization": "right-key"},
        {"Authorization": "Basic right-key"},
        {"Authorization": "Bearer "},
    ):
        r = c.post("/predict", headers=headers, json={"customers": []})
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "unauthorized"}


def test_the_right_key_passes() -> None:
    c = client("key-a", "key-b")
    for key in ("key-a", "key-b"):
        r = c.post("/predict", headers=bearer(key))
        assert r.status_code == 200 and r.text == "/predict"
    assert c.get("/x", headers={"authorization": "bearer key-b"}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/",
        "/docs.json",
        "/static_content/a.js",
    ],
)
def test_health_metrics_and_docs_are_open(path: str) -> None:
    r = client("key").get(path)
    assert r.status_code == 200 and r.text == path


@pytest.mark.parametrize("path", ["/readyz/", "/readyz/../predict", "/schema.json"])
def test_only_exact_public_paths_are_open(path: str) -> None:
    assert client("key").get(path).status_code == 401


def test_a_key_added_to_the_file_works_and_a_revoked_one_stops(
    tmp_path: Path,
) -> None:
    path = tmp_path / "api-keys.txt"
    old = add_key(path, "old", frozenset({"admin"}))
    c = client(path=path)
    assert c.get("/p", headers=bearer(old)).status_code == 200
    new = add_key(path, "new", frozenset({"admin"}))
    assert c.get("/p", headers=bearer(new)).status_code == 200
    remove_key(path, "old")
    assert c.get("/p", headers=bearer(old)).status_code == 401
    assert c.get("/p", headers=bearer(new)).status_code == 200


def test_a_broken_file_keeps_the_last_keys_and_logs_the_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api-keys.txt"
    key = add_key(path, "crm")
    ring = KeyRing([], path)
    path.write_text(path.read_text() + "oops\n")
    with caplog.at_level(logging.ERROR, logger="serving.api.auth"):
        assert match(ring.keys(), key) == "crm"
    assert f"{path}:2: expected name:salt_hex:sha256_hex" in caplog.text
    assert key not in caplog.text


# --- configuration ------------------------------------------------------------


def test_no_key_refuses_to_start_saying_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(NoKeysError) as err:
        keyring_from_config(ApiConfig(keys_file=tmp_path / "none.txt"), {})
    assert "propensity api-key new --name NAME" in str(err.value)
    assert "PROPENSITY_API_KEYS" in str(err.value)
    with pytest.raises(NoKeysError, match="api.keys_file is not set"):
        keyring_from_config(ApiConfig(), {"PROPENSITY_API_KEYS": " , "})


def test_require_keys_false_serves_open_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="serving.api.auth"):
        assert keyring_from_config(ApiConfig(require_keys=False), {}) is None
    assert "every endpoint is open" in caplog.text
    ring = keyring_from_config(
        ApiConfig(require_keys=False), {"PROPENSITY_API_KEYS": "k"}
    )
    assert ring is not None and match(ring.keys(), "k") == "env-1"


def test_env_and_file_keys_both_count(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.txt"
    key = add_key(path, "crm")
    ring = keyring_from_config(
        ApiConfig(keys_file=path), {"PROPENSITY_API_KEYS": "dev"}
    )
    assert ring is not None
    assert match(ring.keys(), key) == "crm" and match(ring.keys(), "dev") == "env-1"


def test_keys_file_is_relative_to_the_config_and_unknown_api_keys_fail(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "p.yaml", tmp_path / "events", None, api={"keys_file": "k.txt"}
    )
    assert load_config(config).api.keys_file == tmp_path / "k.txt"
    write_config(config, tmp_path / "events", None, api={"keys": ["x"]})
    with pytest.raises(ValueError, match="api.keys: unknown key"):
        load_config(config)


# --- the CLI --------------------------------------------------------------------


def test_cli_new_prints_the_key_once_and_list_prints_names(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(
        tmp_path / "p.yaml", tmp_path / "events", None, api={"keys_file": "k.txt"}
    )
    args = ["--config", str(config), "api-key"]
    assert main([*args, "new", "--name", "crm"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert len(key) >= 43 and key not in out.err and "only now" in out.err
    assert match(read_key_file(tmp_path / "k.txt"), key) == "crm"
    assert main([*args, "new", "--name", "batch"]) == 0
    capsys.readouterr()
    assert main([*args, "list"]) == 0
    assert capsys.readouterr().out == "crm\tscore\nbatch\tscore\n"
    assert main([*args, "revoke", "crm"]) == 0
    assert main([*args, "new", "--name", "batch"]) == 1
    assert "a key named 'batch' exists" in capsys.readouterr().err
    assert main([*args, "list"]) == 0
    assert capsys.readouterr().out == "batch\tscore\n"


def test_cli_without_a_keys_file_says_how_to_set_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(tmp_path / "p.yaml", tmp_path / "events", None)
    assert main(["--config", str(config), "api-key", "new", "--name", "x"]) == 2
    assert "api.keys_file is not set" in capsys.readouterr().err


def test_cli_serve_without_keys_fails_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROPENSITY_API_KEYS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no.db'}")
    config = write_config(tmp_path / "p.yaml", tmp_path / "events", None)
    assert main(["--config", str(config), "serve"]) == 1
    assert "no API key configured" in capsys.readouterr().err
    assert not (tmp_path / "no.db").exists() and os.listdir(tmp_path) == ["p.yaml"]


# --- scopes --------------------------------------------------------------------

ROUTES = list(NEEDS)


@pytest.mark.parametrize("scope", ["score", "outreach", "ingest", "admin"])
@pytest.mark.parametrize("route", ROUTES)
def test_each_route_needs_its_scope_and_others_get_403(route: str, scope: str):
    ring = KeyRing([hash_key("k", "key-1", scopes=frozenset({scope}))])
    c = Client(BearerAuth(hello, ring))
    r = c.request("POST", route, headers=bearer("key-1"))
    if NEEDS[route] == scope:
        assert r.status_code == 200
    else:
        assert r.status_code == 403
        assert r.json() == {
            "error": f"forbidden: the key 'k' lacks the '{NEEDS[route]}' scope"
        }
    # a wrong key is still 401, whatever the route
    assert c.request("POST", route, headers=bearer("nope")).status_code == 401


def test_unlisted_routes_need_admin_and_public_ones_nothing() -> None:
    ring = KeyRing([hash_key("s", "k-score", scopes=frozenset({"score"}))])
    c = Client(BearerAuth(hello, ring))
    assert c.get("/something_new", headers=bearer("k-score")).status_code == 403
    assert c.get("/healthz").status_code == 200


def test_cli_new_takes_scopes_and_refuses_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(
        tmp_path / "p.yaml", tmp_path / "events", None, api={"keys_file": "k.txt"}
    )
    args = ["--config", str(config), "api-key"]
    assert main([*args, "new", "--name", "crm", "--scopes", "outreach,score"]) == 0
    capsys.readouterr()
    assert main([*args, "list"]) == 0
    assert capsys.readouterr().out == "crm\tscore,outreach\n"
    assert main([*args, "new", "--name", "x", "--scopes", "root"]) == 1
    assert "unknown or no scope root" in capsys.readouterr().err
