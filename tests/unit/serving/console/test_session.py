"""Console sessions: signed cookies under the key's stored hash, CSRF tokens."""

from __future__ import annotations

from serving.api.auth import KeyRing, hash_key
from serving.console import session

KEY = "k" * 43


def _ring(scopes: frozenset[str] = frozenset({"score"})) -> KeyRing:
    return KeyRing([hash_key("ana", KEY, scopes=scopes)])


def test_a_valid_key_gets_a_session_with_its_scopes_and_a_wrong_one_none() -> None:
    ring = _ring()
    cookie = session.sign_in(ring, KEY, now=1000.0)
    assert cookie is not None and KEY not in cookie
    found = session.session(ring, cookie, now=1001.0)
    assert found is not None
    assert found.key_name == "ana" and found.scopes == frozenset({"score"})
    assert session.sign_in(ring, KEY[:-1] + "x") is None
    assert session.sign_in(ring, "   ") is None


def test_a_forged_expired_or_revoked_session_is_refused() -> None:
    ring = _ring()
    cookie = session.sign_in(ring, KEY, now=1000.0)
    payload, signature = cookie.split(".")
    assert session.session(ring, f"{payload}.{'0' * 64}", now=1001.0) is None
    assert session.session(ring, "garbage", now=1001.0) is None
    late = 1000.0 + session.SESSION_SECONDS + 1
    assert session.session(ring, cookie, now=late) is None
    other = KeyRing([hash_key("ana", "another-key-" + "z" * 30)])  # key replaced
    assert session.session(other, cookie, now=1001.0) is None


def test_csrf_tokens_differ_per_session_and_compare_exactly() -> None:
    ring = _ring()
    a = session.session(ring, session.sign_in(ring, KEY, now=1.0), now=2.0)
    b = session.session(ring, session.sign_in(ring, KEY, now=1.0), now=2.0)
    assert a.csrf != b.csrf
    assert session.token_ok(a.csrf, a.csrf)
    assert not session.token_ok(a.csrf, b.csrf)
    assert not session.token_ok(a.csrf, "")
    assert not session.token_ok(None, a.csrf)
