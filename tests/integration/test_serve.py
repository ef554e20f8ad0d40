"""A real `bentoml serve` subprocess answers over HTTP like in-process prediction."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from core.config import load_config
from features.columns import TARGETS
from serving.online_store.sqlite import stored_as_of
from serving.scoring import Champions
from tests.helpers import (
    TEST_API_KEY,
    Project,
    Server,
    auth,
    free_port,
    records,
    run_cli,
    start_bentoml,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.integration


def test_predict_over_http_equals_in_process(server: Server, trained: Project) -> None:
    body, frame = records(trained, 200)
    response = httpx.post(
        f"{server.url}/predict", json={"customers": body}, headers=auth(), timeout=30
    )
    assert response.status_code == 200, response.text
    data = response.json()
    config = load_config(trained.config)
    champions = Champions.load(config, trained.tracking_uri)
    expected = champions.predict_frame(frame)
    assert [p["customer_id"] for p in data["predictions"]] == frame.customer_id.tolist()
    for target in TARGETS:
        got = np.array([p["probabilities"][target] for p in data["predictions"]])
        np.testing.assert_allclose(got, expected[target], rtol=0, atol=1e-12)
    first = data["predictions"][0]
    assert first["model_versions"] == champions.versions
    assert data["feature_set_version"] == champions.feature_set_version


def test_bad_requests_are_4xx_naming_the_field(
    server: Server, trained: Project
) -> None:
    body, _ = records(trained, 2)
    url = f"{server.url}/predict"
    missing = [dict(body[0]), dict(body[1])]
    missing[1] = {
        "features": {k: v for k, v in body[1]["features"].items() if k != "tenure_days"}
    }
    r = httpx.post(url, headers=auth(), json={"customers": missing})
    assert (
        r.status_code == 400 and "customers[1].features.tenure_days: missing" in r.text
    )
    wrong = {"features": {**body[0]["features"], "purchase_count_30d": "many"}}
    r = httpx.post(url, headers=auth(), json={"customers": [wrong]})
    assert r.status_code == 400 and "customers[0].features.purchase_count_30d" in r.text
    unknown = {"features": {**body[0]["features"], "shoe_size": 42}}
    r = httpx.post(url, headers=auth(), json={"customers": [unknown]})
    assert r.status_code == 400 and "shoe_size: unknown feature" in r.text
    r = httpx.post(url, headers=auth(), json={"customers": []})
    assert r.status_code == 400 and "customers" in r.text
    r = httpx.post(url, headers=auth(), json={"people": body})
    assert r.status_code == 400 and "customers" in r.text
    too_many = {"customers": [body[0]] * 10_001}
    r = httpx.post(url, headers=auth(), json=too_many, timeout=60)
    assert r.status_code == 400 and "customers" in r.text


def test_unknown_category_and_nulls_are_scored_as_missing(
    server: Server, trained: Project
) -> None:
    body, _ = records(trained, 1)
    features = {
        **body[0]["features"],
        "plan": "platinum",
        "days_since_last_purchase": None,
    }
    r = httpx.post(
        f"{server.url}/predict",
        json={"customers": [{"features": features}]},
        headers=auth(),
    )
    assert r.status_code == 200
    probs = r.json()["predictions"][0]["probabilities"]
    assert set(probs) == set(TARGETS) and all(0 < p < 1 for p in probs.values())


def test_predict_needs_an_api_key(server: Server, trained: Project) -> None:
    body, _ = records(trained, 1)
    url, wrong = f"{server.url}/predict", "wrong-key-0123456789abcdef"
    for headers in ({}, auth(wrong), {"Authorization": TEST_API_KEY}):
        r = httpx.post(url, json={"customers": body}, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "unauthorized"}
    assert httpx.post(url, json={"customers": body}, headers=auth()).status_code == 200
    for path in ("/readyz", "/healthz", "/livez", "/metrics", "/docs.json", "/"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
    assert httpx.get(f"{server.url}/schema.json").status_code == 401
    log = server.log.read_text()
    assert "/predict" in log and "401" in log  # the access log saw the requests
    assert TEST_API_KEY not in log and wrong not in log


def test_explain_outreach_metadata_over_http(server: Server, trained: Project) -> None:
    """The new endpoints behind the same key; outreach keyed by the project env."""
    body, _ = records(trained, 20)
    requests = {
        "/explain": {"customers": body, "target": "purchase", "k": 2},
        "/outreach": {
            "campaign_id": "http-test",
            "target": "purchase",
            "budget": 10,
            "customers": body,
        },
        "/metadata": {},
    }
    for path, request in requests.items():
        url = f"{server.url}{path}"
        assert httpx.post(url, json=request).status_code == 401, path
        r = httpx.post(url, json=request, headers=auth(), timeout=30)
        assert r.status_code == 200, (path, r.text)
        requests[path] = r.json()
    assert len(requests["/explain"]["explanations"]) == len(body)
    assert requests["/outreach"]["counts"]["eligible"] == len(body)
    assert set(requests["/metadata"]["models"]) == set(TARGETS)
    paths = httpx.get(f"{server.url}/docs.json").json()["paths"]
    assert {"/explain", "/outreach", "/metadata"} <= set(paths)


def test_bentoml_serve_without_api_keys_is_never_ready(
    tmp_path: Path, trained: Project
) -> None:
    """A bare `bentoml serve` with no key logs how to make one and never turns
    ready (the service's start-up fails before it loads the champions)."""
    env = {**trained.env(), "PROPENSITY_API_KEYS": ""}
    log = tmp_path / "serve.log"
    url, process = start_bentoml(env, log)
    try:
        deadline = time.monotonic() + 120
        while "no API key configured" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                assert httpx.get(f"{url}/readyz", timeout=1).status_code != 200
            time.sleep(0.5)
        assert "propensity api-key new" in log.read_text()
        with pytest.raises((TimeoutError, RuntimeError)):
            wait_ready(url, process, log, deadline_s=5)
    finally:
        stop(process)


def test_serve_without_champions_fails_saying_to_train_first(
    tmp_path: Path, trained: Project
) -> None:
    env = {**trained.env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = run_cli(["serve", "--port", str(free_port())], env, timeout=120)
    assert done.returncode == 1
    assert "train first" in done.stderr and "churn" in done.stderr


def test_predict_by_id_returns_exactly_the_nightly_scores(
    server: Server, trained: Project
) -> None:
    """The nightly job writes the online store the running server reads (picked up
    without a restart); for the same customers and as-of date the API's scores
    are the nightly output's, bit for bit."""
    done = run_cli(["score"], trained.env())
    assert done.returncode == 0, done.stderr[-2000:]
    store = load_config(trained.config).online_store.path
    as_of = stored_as_of(store)
    nightly = pd.read_parquet(trained.root / "scores" / f"as_of={as_of}")
    ids = nightly.customer_id.sample(300, random_state=1).tolist() + ["no-such-id"]
    r = httpx.post(
        f"{server.url}/predict_by_id",
        json={"customer_ids": ids},
        headers=auth(),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["found"] == 300 and data["predictions"][-1]["status"] == "not_found"
    expected = nightly.set_index("customer_id")
    for p in data["predictions"][:-1]:
        assert p["status"] == "ok" and p["as_of"] == as_of
        row = expected.loc[p["customer_id"]]
        for target in TARGETS:
            assert p["model_versions"][target] == row[f"{target}_model_version"]
            if pd.isna(row[target]):  # outside the target's population
                assert target not in p["probabilities"]
                assert target in p["not_in_population"]
            else:
                assert p["probabilities"][target] == row[target]
    metrics = httpx.get(f"{server.url}/metrics").text
    found = re.search(
        r'propensity_scored_customers_total\{[^}]*endpoint="predict_by_id"'
        r'[^}]*target="churn"[^}]*\} (\S+)',
        metrics,
    )
    assert found and float(found.group(1)) >= 300, metrics[-2000:]
    assert re.search(
        r'propensity_online_store_lookups_total\{[^}]*status="not_found"[^}]*\} '
        r"[1-9]",
        metrics,
    )
