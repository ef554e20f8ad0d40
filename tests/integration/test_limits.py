"""Per-key limits and the access log on a real `bentoml serve`: past the burst a
key gets 429 with Retry-After, after waiting it gets 200 again, and the server's
log holds one access line per request, with the key's name and record count but
never the key or a customer id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEST_API_KEY, Project, auth, serving, write_config

pytestmark = pytest.mark.integration

BURST = 3


def access_lines(log: Path) -> list[dict]:
    """The JSON of the `propensity.access` lines in a server log."""
    out = []
    for raw in log.read_text().splitlines():
        _, marker, rest = raw.partition("propensity.access ")
        if marker:
            out.append(json.loads(rest))
    return out


def test_a_key_past_its_burst_gets_429_then_200_after_retry_after(
    trained: Project, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "propensity.yaml",
        trained.events,
        trained.customers,
        # a token every 2 s: the burst is spent long before one comes back
        api={"rate_limit": {"per_second": 0.5, "burst": BURST}},
    )
    env = {**trained.env(), "PROPENSITY_CONFIG": str(config)}
    ids = [f"C{n:07d}" for n in range(69, 74)]
    with serving(env, tmp_path / "serve.log") as server:
        url = f"{server.url}/predict_by_id"
        answers = [
            httpx.post(url, json={"customer_ids": ids}, headers=auth(), timeout=30)
            for _ in range(BURST + 1)
        ]
        # no online store in this project: 503 from the endpoint, not the limit
        assert [r.status_code for r in answers[:BURST]] == [503] * BURST
        refused = answers[BURST]
        assert refused.status_code == 429, refused.text
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        body = refused.json()
        assert body["limit"]["key"] == "env-1"
        assert body["limit"]["per_second"] == 0.5
        assert body["limit"]["burst"] == BURST
        # public paths are never limited
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        time.sleep(wait)
        again = httpx.post(
            f"{server.url}/metadata", json={}, headers=auth(), timeout=30
        )
        assert again.status_code == 200, again.text
        # a wrong key is 401, spends no token and is logged without a name
        assert httpx.post(url, json={}, headers=auth("wrong")).status_code == 401
        time.sleep(0.5)  # the worker writes the last line as the answer leaves
        log = server.log.read_text()
        lines = access_lines(server.log)
    by_id = [x for x in lines if x["endpoint"] == "/predict_by_id"]
    assert [(x["status"], x["records"], x["key"]) for x in by_id] == [
        (503, len(ids), "env-1")
    ] * BURST + [(429, None, "env-1"), (401, None, None)]
    assert [(x["endpoint"], x["status"]) for x in lines if x not in by_id] == [
        ("/metadata", 200)
    ]
    assert all(x["latency_ms"] >= 0 for x in lines)
    assert TEST_API_KEY not in log
    assert not any(cid in log for cid in ids)
