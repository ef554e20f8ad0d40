"""`explain`, in-process through the service's ASGI app.

The app is built once for this module (BentoML's Prometheus metrics refuse a second
`to_asgi()` in one process).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from features.config import load_config
from features.definition import FeatureSpec, catalogue
from serving.predictor import Champions
from tests.conftest import Project, auth
from tests.integration.test_serve import records

pytestmark = pytest.mark.integration

TARGET = "churn"


@pytest.fixture(scope="module")
def body(trained: Project) -> list[dict]:
    return records(trained, 60)[0]


@pytest.fixture(scope="module")
def champions(trained: Project) -> Champions:
    return Champions.load(load_config(trained.config), trained.tracking_uri)


@pytest.fixture(scope="module")
def excluded(body: list[dict], champions: Champions) -> str:
    """The feature most often the top churn reason: configured non-actionable."""
    found = champions.explain_records([c["features"] for c in body], 1)[TARGET]
    return Counter(r[0].feature for r in found if r).most_common(1)[0][0]


@pytest.fixture(scope="module")
def client(
    trained: Project, excluded: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The service in-process, on the trained project with `excluded` set as
    non-actionable; the environment is the project's only during start-up."""
    config = yaml.safe_load(trained.config.read_text())
    config["explain"] = {"non_actionable": [excluded], "top_k": 3}
    path = tmp_path_factory.mktemp("endpoints") / "propensity.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**trained.env(), "PROPENSITY_CONFIG": str(path)}.items():
            mp.setenv(name, value)
        from serving.service import Propensity

        test_client = TestClient(Propensity.to_asgi(), headers=auth())
        test_client.__enter__()  # start-up: the service loads the champions
    try:
        yield test_client
    finally:
        test_client.__exit__(None, None, None)


def descriptions(trained: Project) -> dict[str, str]:
    spec = FeatureSpec.from_config(load_config(trained.config))
    return {f.name: f.description for f in catalogue(spec).features}


# --- explain ---------------------------------------------------------------------


def test_explain_gives_k_positive_sorted_reasons_as_in_process(
    client: TestClient,
    body: list[dict],
    champions: Champions,
    excluded: str,
    trained: Project,
) -> None:
    r = client.post("/explain", json={"customers": body, "target": TARGET, "k": 4})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["target"] == TARGET
    assert data["model_version"] == champions.versions[TARGET]
    got = data["explanations"]
    assert [e["customer_id"] for e in got] == [c["customer_id"] for c in body]
    feats = [c["features"] for c in body]
    probs = champions.predict_records(feats)[TARGET]
    np.testing.assert_allclose([e["probability"] for e in got], probs, atol=1e-12)
    expected = champions.explain_records(
        feats, 4, {excluded}, descriptions=descriptions(trained)
    )[TARGET]
    assert any(len(e["reasons"]) == 4 for e in got)
    for e, want in zip(got, expected, strict=True):
        contrib = [x["contribution"] for x in e["reasons"]]
        assert len(contrib) <= 4 and all(c > 0 for c in contrib)
        assert contrib == sorted(contrib, reverse=True)
        assert [x["feature"] for x in e["reasons"]] == [w.feature for w in want]
        assert [x["phrase"] for x in e["reasons"]] == [w.phrase for w in want]
        np.testing.assert_allclose(contrib, [w.contribution for w in want])


def test_explain_leaves_out_non_actionable_features(
    client: TestClient, body: list[dict], champions: Champions, excluded: str
) -> None:
    # without the exclusion it is the top reason for some customers
    unrestricted = champions.explain_records([c["features"] for c in body], 3)
    assert any(excluded in [x.feature for x in rs] for rs in unrestricted[TARGET])
    r = client.post("/explain", json={"customers": body, "target": TARGET})
    assert r.status_code == 200, r.text
    got = r.json()["explanations"]
    assert all(len(e["reasons"]) <= 3 for e in got)  # config top_k
    assert any(len(e["reasons"]) == 3 for e in got)
    assert all(x["feature"] != excluded for e in got for x in e["reasons"])


def test_explain_bad_requests_are_400_naming_the_field(
    client: TestClient, body: list[dict]
) -> None:
    r = client.post("/explain", json={"customers": body[:2], "target": "upsell"})
    assert r.status_code == 400 and "target" in r.text
    for k in (0, 21):
        r = client.post(
            "/explain", json={"customers": body[:1], "target": TARGET, "k": k}
        )
        assert r.status_code == 400 and "k" in r.text, k
    unknown = {"features": {**body[0]["features"], "shoe_size": 42}}
    r = client.post("/explain", json={"customers": [unknown], "target": TARGET})
    assert r.status_code == 400
    assert "customers[0].features.shoe_size: unknown feature" in r.text
    r = client.post("/explain", json={"customers": [], "target": TARGET})
    assert r.status_code == 400 and "customers" in r.text


def test_explain_needs_an_api_key(client: TestClient, body: list[dict]) -> None:
    r = client.post(
        "/explain",
        json={"customers": body[:1], "target": TARGET},
        headers={"Authorization": ""},
    )
    assert r.status_code == 401


def test_new_endpoints_are_in_the_docs(client: TestClient) -> None:
    paths = client.get("/docs.json").json()["paths"]
    for path in ("/explain",):
        assert path in paths, sorted(paths)
