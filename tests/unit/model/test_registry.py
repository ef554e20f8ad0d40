"""Experiments the project creates are training ones for the MLflow UI, on a real
MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from model.registry import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    configure,
    ensure_experiment,
    experiment_url,
)


def test_experiments_are_created_or_later_tagged_as_training_ones(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    made = configure(uri, "propensity")
    client = MlflowClient(uri, uri)
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert configure(uri, "propensity") == made
    # made before the tag existed (or by hand): tagged when next opened
    older = client.create_experiment("propensity.outcomes")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    assert ensure_experiment(client, "propensity.outcomes") == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    # a deleted one is left as it is
    gone = client.create_experiment("gone")
    client.delete_experiment(gone)
    assert ensure_experiment(client, "gone") == gone
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(gone).tags


def test_the_experiment_link_asks_for_the_training_view() -> None:
    assert experiment_url("http://127.0.0.1:5000/", "3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )
