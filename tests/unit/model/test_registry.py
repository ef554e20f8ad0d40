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


def test_a_model_folder_loads_as_mlflow_saved_it(tmp_path: Path) -> None:
    """load_local reads the MLmodel itself (libyaml) and the booster directly:
    the same trees and metadata as MLflow's own loader gives."""
    import lightgbm as lgb
    import mlflow.lightgbm
    import numpy as np

    from model.registry import METADATA_KEY, load_local

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(float)
    names = ["a", "b", "c"]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4},
        lgb.Dataset(x, y, feature_name=names),
        num_boost_round=5,
    )
    meta = {"encoding": {"features": names}, "backtest": [{"roc_auc": 0.7}]}
    folder = tmp_path / "model"
    mlflow.lightgbm.save_model(booster, str(folder), metadata={METADATA_KEY: meta})
    loaded = load_local(folder, "m", "1", run_id="r")
    reference = mlflow.lightgbm.load_model(str(folder))
    assert np.array_equal(loaded.booster.predict(x), reference.predict(x))
    assert loaded.metadata == meta
    assert loaded.encoding.features == tuple(names)
    assert (loaded.name, loaded.version, loaded.run_id) == ("m", "1", "r")


def test_a_model_names_the_features_a_definition_does_not_build() -> None:
    """`unbuilt`: None when the built names cover the model's; else a sentence
    naming the model, the missing features (at most 8, then a count) and both
    feature-set versions. Champions.require_built raises a ConfigError with it."""
    import pytest

    from core.config import ConfigError
    from model.encoding import Encoding
    from model.registry import RegisteredModel
    from serving.scoring import Champions

    names = tuple(f"f{i}" for i in range(12))
    model = RegisteredModel(
        "churn", "3", None, Encoding(names, {}), {"feature_set_version": "aaa"}, None
    )
    assert model.unbuilt([*names, "extra"], "bbb") is None
    why = model.unbuilt(names[:2], "bbb")
    assert why is not None
    assert why.startswith("churn v3 reads 10 feature(s) ")
    assert "(f2, f3, f4, f5, f6, f7, f8, f9 and 2 more)" in why
    assert "trained on feature set aaa, the config builds bbb" in why
    Champions({"churn": model}).require_built(names, "aaa")
    with pytest.raises(ConfigError, match="champion churn v3 reads 10 feature"):
        Champions({"churn": model}).require_built(names[:2], "bbb")
