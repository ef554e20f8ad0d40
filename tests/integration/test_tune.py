"""`propensity tune` on small demo data, through the CLI, into a temp MLflow store."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from core.config import LightGBMConfig, load_config
from tests.helpers import run_cli, write_config
from training.tune import ARTIFACT, SEARCH

pytestmark = pytest.mark.integration

TRIALS = 3
ARGS = ["tune", "--target", "churn", "--trials", str(TRIALS), "--seed", "11"]


@dataclass(frozen=True)
class Tuned:
    config: Path
    uri: str
    env: dict[str, str]
    stdout: str
    run_id: str


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Tuned:
    root = tmp_path_factory.mktemp("tune")
    config = write_config(
        root / "propensity.yaml",
        demo_dir / "events.parquet",
        demo_dir / "customers.parquet",
        training={"backtest": {"origins": 2}},  # half the fits of the default 4
    )
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "PROPENSITY_CONFIG": str(config), "MLFLOW_TRACKING_URI": uri}
    done = run_cli(ARGS, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return Tuned(config, uri, env, done.stdout, _run_id(done.stdout))


@pytest.fixture(scope="module")
def client(tuned: Tuned) -> MlflowClient:
    mlflow.set_tracking_uri(tuned.uri)
    return MlflowClient(tuned.uri, tuned.uri)


def _run_id(stdout: str) -> str:
    found = re.search(r"run tune-churn-\S+ \((\w+)\)", stdout)
    assert found, stdout
    return found.group(1)


def _trials(client: MlflowClient, parent: Run) -> list[Run]:
    """The parent's nested runs, by trial number."""
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    return sorted(runs, key=lambda r: int(r.data.tags["trial"]))


def test_a_parent_run_with_one_nested_run_per_trial(
    tuned: Tuned, client: MlflowClient
) -> None:
    parent = client.get_run(tuned.run_id)
    experiment = client.get_experiment_by_name("propensity")
    assert parent.info.experiment_id == experiment.experiment_id
    # the whole store: this one parent and its trials (the rerun test comes last)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 + TRIALS
    origins = load_config(tuned.config).training.backtest.origins
    assert parent.info.run_name.startswith("tune-churn-")
    assert parent.data.tags["kind"] == "tune"
    assert parent.data.tags["target"] == "churn"
    trials = _trials(client, parent)
    assert [r.data.tags["trial"] for r in trials] == ["0", "1", "2"]
    for r in trials:
        assert r.info.experiment_id == experiment.experiment_id
        assert r.data.tags["kind"] == "trial" and r.data.tags["target"] == "churn"
        history = client.get_metric_history(r.info.run_id, "backtest_log_loss")
        assert [m.step for m in history] == list(range(origins))
        mean = sum(m.value for m in history) / len(history)
        assert r.data.metrics["backtest_log_loss_mean"] == pytest.approx(mean)
    assert parent.data.metrics["trials_completed"] == TRIALS


def test_trial_0_is_the_config_and_the_best_is_no_worse(
    tuned: Tuned, client: MlflowClient
) -> None:
    base = load_config(tuned.config).training.lightgbm
    parent = client.get_run(tuned.run_id)
    trials = _trials(client, parent)
    first = trials[0].data.params
    for name in SEARCH:
        assert float(first[name]) == getattr(base, name), name
    values = [r.data.metrics["backtest_log_loss_mean"] for r in trials]
    best = parent.data.metrics["best_log_loss_mean"]
    assert parent.data.metrics["baseline_log_loss_mean"] == values[0]
    assert best == min(values) <= values[0]
    assert parent.data.metrics["log_loss_improvement"] == pytest.approx(
        values[0] - best
    )
    best_run = trials[int(parent.data.metrics["best_trial"])]
    assert parent.data.tags["best_trial_run_id"] == best_run.info.run_id
    for name in SEARCH:
        assert parent.data.params[f"best_{name}"] == best_run.data.params[name]
    assert f"config params (trial 0)    {values[0]:.5f}" in tuned.stdout
    assert f"best (trial {best_run.data.tags['trial']})" in tuned.stdout


def test_the_snippet_is_a_lightgbm_config_with_the_best_params(
    tuned: Tuned, client: MlflowClient
) -> None:
    parent = client.get_run(tuned.run_id)
    text = Path(
        mlflow.artifacts.download_artifacts(
            run_id=tuned.run_id, artifact_path=ARTIFACT, tracking_uri=tuned.uri
        )
    ).read_text()
    snippet = LightGBMConfig.model_validate(yaml.safe_load(text))
    for name in SEARCH:
        assert str(getattr(snippet, name)) == parent.data.params[f"best_{name}"]
    base = load_config(tuned.config).training.lightgbm
    assert snippet.num_boost_round == base.num_boost_round  # untuned: the config's
    assert text in tuned.stdout


def test_tuning_registers_nothing(tuned: Tuned, client: MlflowClient) -> None:
    assert client.search_registered_models() == []


def test_the_same_seed_samples_the_same_params(
    tuned: Tuned, client: MlflowClient
) -> None:
    again = run_cli(ARGS, tuned.env)
    assert again.returncode == 0, again.stderr[-3000:]
    first = _trials(client, client.get_run(tuned.run_id))
    second = _trials(client, client.get_run(_run_id(again.stdout)))
    assert [r.data.params for r in second] == [r.data.params for r in first]
    assert [r.data.metrics["backtest_log_loss_mean"] for r in second] == [
        r.data.metrics["backtest_log_loss_mean"] for r in first
    ]
    assert client.search_registered_models() == []
