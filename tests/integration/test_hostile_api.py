"""Hostile request bodies against the real server: deep nesting, huge numbers,
bytes that are not UTF-8, broken JSON, wrong shapes. Each gets a 4xx whose body
names the problem (413 for size, 400/422 naming the field), never a 5xx, and
the server keeps answering."""

from __future__ import annotations

import pytest
import requests

from core.config import load_config
from serving.online_store.sqlite import stored_as_of
from tests.helpers import Project, Server, auth, run_cli

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def store(trained: Project) -> None:
    """predict_by_id needs the online store the nightly job writes (shared with
    test_fuzz: written once per session)."""
    if stored_as_of(load_config(trained.config).online_store.path) is None:
        done = run_cli(["score"], trained.env())
        assert done.returncode == 0, done.stderr[-2000:]


def post(server: Server, path: str, data: bytes | str) -> requests.Response:
    if isinstance(data, str):
        data = data.encode()
    return requests.post(
        f"{server.url}{path}", data=data, headers={**auth(), **JSON}, timeout=60
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = {
    # depth well past any recursive parser's limit, a few hundred KB
    "deep_array_in_a_feature": (
        "/predict",
        '{"customers": [{"features": {"tenure": ' + nested(100_000) + "}}]}",
    ),
    "deep_object_in_a_feature": (
        "/predict",
        '{"customers": [{"features": {"tenure": '
        + '{"a": ' * 50_000
        + "1"
        + "}" * 50_000
        + "}}]}",
    ),
    "deep_array_as_the_body": ("/predict", nested(200_000)),
    "deep_ids": ("/predict_by_id", '{"customer_ids": ' + nested(100_000) + "}"),
    "a_5000_digit_integer": (
        "/predict",
        '{"customers": [{"features": {"tenure": ' + "9" * 5000 + "}}]}",
    ),
    "an_overflowing_float": (
        "/outreach",
        '{"campaign_id": "x", "target": "churn", "budget": 1, '
        '"customers": [{"customer_id": "a", "features": {}, "value": 1e999}]}',
    ),
    "a_huge_budget": (
        "/outreach",
        '{"campaign_id": "x", "target": "churn", "budget": 1' + "0" * 400 + ", "
        '"customers": [{"customer_id": "a", "features": {}}]}',
    ),
    "not_utf8": ("/predict", b'{"customers": [{"features": {"x": "\xff\xfe"}}]}'),
    # a lone surrogate is not valid JSON text for pydantic's parser
    "a_lone_surrogate": ("/predict_by_id", '{"customer_ids": ["\\ud800"]}'),
    "truncated_json": ("/predict", '{"customers": [{"features": {"x": 1'),
    "not_json": ("/predict", "customers=1"),
    "the_wrong_shape": ("/predict", '{"customers": {"features": []}}'),
    "many_keys": (
        "/predict",
        '{"customers": [{"features": {'
        + ", ".join(f'"f{i}": {i}' for i in range(100_000))
        + "}}]}",
    ),
    "a_record_too_many": (
        "/predict_by_id",
        '{"customer_ids": [' + ", ".join(['"a"'] * 10_001) + "]}",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_body_is_a_4xx_naming_the_problem(
    server: Server, store: None, name: str
) -> None:
    path, data = CASES[name]
    response = post(server, path, data)
    assert 400 <= response.status_code < 500, (
        name,
        response.status_code,
        response.text[:500],
    )
    body = response.json()
    assert isinstance(body, dict) and (body.get("error") or body.get("detail")), body
    assert len(response.content) < 20_000, (name, len(response.content))


@pytest.mark.parametrize("odd", ["a\\u0000b", "\\u202e\\u0301", "' OR 1=1 --"])
def test_odd_ids_are_answered_not_found(server: Server, store: None, odd: str) -> None:
    """A NUL, a bidi control or SQL in an id: just an id the
    store does not hold."""
    response = post(server, "/predict_by_id", '{"customer_ids": ["' + odd + '"]}')
    assert response.status_code == 200, response.text[:500]
    assert response.json()["not_found"] == 1


def test_the_server_still_answers_after_hostile_bodies(server: Server) -> None:
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_a_chunked_body_over_the_limit_is_413_without_a_length(
    server: Server, trained: Project
) -> None:
    """No Content-Length (chunked): read up to api.max_request_mb, then refused."""
    limit = load_config(trained.config).api.max_request_mb * 1_000_000
    chunk = b" " * 1_000_000

    def body():
        yield b'{"customers": [{"features": {"x": "'
        for _ in range(int(limit // len(chunk)) + 2):
            yield chunk

    response = requests.post(
        f"{server.url}/predict", data=body(), headers={**auth(), **JSON}, timeout=120
    )
    assert response.status_code == 413, response.text[:500]
    assert "api.max_request_mb" in response.json()["error"]
