"""`propensity ui` serves the MLflow UI on the project's own store and prints the
link that opens the experiment on its training runs."""

from __future__ import annotations

import time

import httpx
import pytest
from mlflow.tracking import MlflowClient

from core.config import load_config
from model.registry import experiment_url
from tests.helpers import BIN, Project, free_port, spawn, stop

pytestmark = pytest.mark.integration


def test_ui_lists_the_registered_models(trained: Project, tmp_path) -> None:
    port = free_port()
    log = tmp_path / "ui.log"
    process = spawn(
        [str(BIN / "propensity"), "ui", "--port", str(port)], trained.env(), log
    )
    url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/registered-models/search"
    try:
        deadline, names = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                models = httpx.get(url, timeout=2).json()["registered_models"]
                names = sorted(m["name"] for m in models)
                break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.5)
        expected = ["churn", "purchase", "service_request"]
        assert names == expected, log.read_text()[-2000:]
        # the link it prints opens the experiment on its training runs
        experiment = load_config(trained.config).mlflow.experiment
        found = MlflowClient(trained.tracking_uri).get_experiment_by_name(experiment)
        link = experiment_url(f"http://127.0.0.1:{port}", found.experiment_id)
        assert link.endswith("/runs?workflowType=machine_learning")
        assert link in log.read_text()
    finally:
        stop(process)
