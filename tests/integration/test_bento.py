"""`propensity bento`: the champions imported into the BentoML model store and
built into a Bento that serves them with no MLflow registry at hand."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from core.config import load_config
from features.columns import TARGETS
from serving.scoring import Champions
from tests.helpers import (
    Project,
    auth,
    records,
    run_cli,
    start_service,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.integration


def test_bento_pins_the_champions_and_serves_them_without_the_registry(
    trained: Project, tmp_path: Path
) -> None:
    home = tmp_path / "bentoml_home"
    env = {**trained.env(), "BENTOML_HOME": str(home)}
    built = run_cli(["bento", "--version", "t1"], env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "built Bento propensity:t1" in built.stdout
    champions = Champions.load(load_config(trained.config), trained.tracking_uri)
    again = run_cli(["bento", "--import-only"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already imported") == len(TARGETS)
    # the BentoML model store's own records (model.yaml) of what was imported
    packed = [
        yaml.safe_load(p.read_text())["labels"]
        for p in (home / "models").glob("*/*/model.yaml")
    ]
    assert {x["mlflow_model"]: x["mlflow_version"] for x in packed} == {
        model.name: model.version for model in champions.models.values()
    }
    assert len(packed) == len(TARGETS)  # the second run imported nothing
    # served from the Bento, elsewhere, with an empty registry: the packed models
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'empty.db'}"
    env.pop("PROPENSITY_CONFIG")
    log = tmp_path / "bento.log"
    url, process = start_service("propensity:t1", env, log, home=home, cwd=tmp_path)
    try:
        wait_ready(url, process, log, deadline_s=120)
        body, frame = records(trained, 30)
        r = httpx.post(
            f"{url}/predict", json={"customers": body}, headers=auth(), timeout=30
        )
        assert r.status_code == 200, r.text
        expected = champions.predict_frame(frame)
        for target in TARGETS:
            got = [p["probabilities"][target] for p in r.json()["predictions"]]
            np.testing.assert_allclose(got, expected[target], rtol=0, atol=1e-12)
        meta = httpx.post(f"{url}/metadata", json={}, headers=auth(), timeout=30)
        assert {t: m["version"] for t, m in meta.json()["models"].items()} == (
            champions.versions
        )
    finally:
        stop(process)
