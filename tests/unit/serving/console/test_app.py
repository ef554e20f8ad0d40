"""The console app in process (Starlette's TestClient: no process started):
sign-in, scopes, CSRF, and figures read from the files the nightly run writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from core.config import load_config
from serving.api.auth import add_key
from serving.batch.aggregates import AGGREGATES_FILE
from serving.console.app import standalone

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    out = tmp_path / "scores"
    out.mkdir()
    (out / "_last_run.json").write_text(
        json.dumps(
            {
                "state": "finished",
                "exit_code": 3,
                "as_of": "2025-12-31",
                "rows_scored": 123456,
                "rows_skipped": {"suppressed": 7},
                "seconds": {"score": 1.5},
                "drift_alerts": ["days_since_last_event"],
            }
        )
    )
    (out / AGGREGATES_FILE).write_text(
        json.dumps(
            {
                "as_of": "2025-12-31",
                "histograms": {"edges": [0, 0.5, 1], "counts": {"churn": [100, 23]}},
                "quantiles": {"score_churn_mean": 0.2},
                "drift": {
                    "level": "alert",
                    "alerts": ["days_since_last_event"],
                    "warnings": [],
                    "thresholds": {"warn": 0.1, "alert": 0.25},
                    "scores": [],
                    "features": [
                        {
                            "feature": "days_since_last_event",
                            "psi": 0.4,
                            "level": "alert",
                        }
                    ],
                },
                "models": {},
                "outcomes": {},
                "readouts": {},
            }
        )
    )
    config = tmp_path / "propensity.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"events": str(tmp_path / "events.parquet")},
                "training": {"cutoffs": {"start": "2025-03-01", "freq": "MS"}},
                "scoring": {"output": str(out)},
                "api": {"keys_file": str(tmp_path / "keys.txt")},
            }
        )
    )
    keys = {
        "viewer": add_key(tmp_path / "keys.txt", "viewer", frozenset({"score"})),
        "marketer": add_key(tmp_path / "keys.txt", "marketer", frozenset({"outreach"})),
    }
    return config, keys


def _client(config: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.delenv("PROPENSITY_API_KEYS", raising=False)
    return TestClient(standalone(load_config(config), config.parent))


def _sign_in(client: TestClient, key: str):  # noqa: ANN202
    token = TOKEN.search(client.get("/console/signin").text).group(1)
    return client.post("/console/signin", data={"csrf_token": token, "api_key": key})


def test_the_overview_shows_the_status_and_aggregates_figures(
    project, monkeypatch
) -> None:
    config, keys = project
    client = _client(config, monkeypatch)
    page = _sign_in(client, keys["viewer"])
    assert page.status_code == 200 and page.url.path == "/console/overview"
    html = page.text
    assert (
        "123,456" in html and "suppressed" in html and "days_since_last_event" in html
    )
    assert re.search(r"<td class=\"num\">100</td>", html) and "3 (drift_alert)" in html
    assert "<script" not in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_wrong_key_or_no_session_shows_no_data(project, monkeypatch) -> None:
    config, _ = project
    client = _client(config, monkeypatch)
    refused = _sign_in(client, "nope")
    assert refused.status_code == 401 and "123,456" not in refused.text
    away = client.get("/console/overview", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/console/signin"


def test_scopes_decide_the_pages_and_forms_need_their_token(
    project, monkeypatch
) -> None:
    config, keys = project
    client = _client(config, monkeypatch)
    _sign_in(client, keys["marketer"])
    assert client.get("/console/overview").status_code == 403
    assert client.get("/console/campaigns").status_code == 200
    client = _client(config, monkeypatch)
    _sign_in(client, keys["viewer"])
    assert client.get("/console/forget").status_code == 403
    forged = client.post(
        "/console/customer", data={"csrf_token": "x", "customer_id": "C1"}
    )
    assert forged.status_code == 403
    cookie = client.cookies.get("propensity_console")
    assert (
        cookie
        and client.post("/console/signout", data={"csrf_token": "x"}).status_code == 403
    )
    token = TOKEN.search(client.get("/console/overview").text).group(1)
    out = client.post(
        "/console/signout", data={"csrf_token": token}, follow_redirects=False
    )
    assert out.status_code == 303 and "propensity_console=" in out.headers["set-cookie"]
    assert "httponly" in out.headers["set-cookie"].lower()


def test_the_session_cookie_is_secure_over_tls(project, monkeypatch) -> None:
    config, keys = project
    monkeypatch.delenv("PROPENSITY_API_KEYS", raising=False)
    client = TestClient(
        standalone(load_config(config), config.parent), base_url="https://console.test"
    )
    token = TOKEN.search(client.get("/console/signin").text).group(1)
    done = client.post(
        "/console/signin",
        data={"csrf_token": token, "api_key": keys["viewer"]},
        follow_redirects=False,
    )
    cookie = done.headers["set-cookie"].lower()
    assert "propensity_console=" in cookie
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
