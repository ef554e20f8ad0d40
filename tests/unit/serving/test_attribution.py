"""Contributions: both methods add up to the raw score; path equals SHAP on stumps."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.attribution import contributions


def booster(num_leaves: int, rounds: int = 40) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 6))
    x[:, 2] = rng.integers(0, 4, 2000)
    x[rng.random(x.shape) < 0.05] = np.nan
    logit = np.nan_to_num(x[:, 0]) * 2 - np.nan_to_num(x[:, 1]) + (x[:, 2] == 1)
    y = (rng.random(2000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": num_leaves, "verbose": -1}
    data = lgb.Dataset(x, y, categorical_feature=[2])
    return lgb.train(params, data, num_boost_round=rounds), x[:200]


@pytest.mark.parametrize("method", ["shap", "path"])
def test_contributions_add_up_to_the_raw_score(method: str) -> None:
    model, x = booster(15)
    found = contributions(model, x, method)
    assert found.shape == (200, 7)
    np.testing.assert_allclose(found.sum(axis=1), model.predict(x, raw_score=True))


def test_path_equals_shap_for_stumps_and_agrees_on_the_driver() -> None:
    stumps, x = booster(2)
    np.testing.assert_allclose(
        contributions(stumps, x, "path"), contributions(stumps, x, "shap"), atol=1e-9
    )
    model, x = booster(15)
    path, shap = contributions(model, x, "path"), contributions(model, x, "shap")
    agree = (path[:, :-1].argmax(axis=1) == shap[:, :-1].argmax(axis=1)).mean()
    assert agree > 0.8


def test_unknown_method_is_named() -> None:
    model, x = booster(2, rounds=2)
    with pytest.raises(ValueError, match="method: one of"):
        contributions(model, x, "lime")
