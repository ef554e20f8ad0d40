"""The served blend: numpy only, the same numbers after a round trip."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from model.blend import Blend, Linear, blend_raw, served_raw


def _linear() -> Linear:
    return Linear(
        numeric=[0, 1],
        medians=[0.5, 0.0],
        indicators=[0],
        means=[0.1, 0.0, 0.2],
        scales=[1.0, 2.0, 0.5],
        categorical=[2],
        categories=[[0.0, 1.0]],
        coef=[0.7, -0.3, 0.4, 1.0, -1.0],
        intercept=-0.2,
    )


def _booster() -> lgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=5)


def test_the_logistic_regression_alone_and_the_round_trip() -> None:
    matrix = np.array([[1.0, np.nan, 0.0], [np.nan, 3.0, 1.0], [2.0, -1.0, np.nan]])
    alone = Blend(0.0, 1.0, 0.0, _linear())
    z = _linear().margin(matrix)
    np.testing.assert_allclose(alone.apply(np.zeros(3), matrix), 1 / (1 + np.exp(-z)))
    again = Blend.from_dict(alone.to_dict())
    assert again == alone and Blend.from_dict(None) is None


def test_served_raw_is_the_trees_without_a_blend_and_the_blend_with_one() -> None:
    booster = _booster()
    matrix = np.random.default_rng(1).normal(size=(20, 3))
    np.testing.assert_array_equal(
        served_raw(booster, None, matrix), booster.predict(matrix)
    )
    blend = Blend(0.8, 0.3, 0.1, _linear())
    expected = blend.apply(booster.predict(matrix, raw_score=True), matrix)
    np.testing.assert_allclose(served_raw(booster, blend, matrix), expected)
    # from the trees' probabilities (Spark's UDF) the same numbers
    np.testing.assert_allclose(
        blend_raw(blend, booster.predict(matrix), matrix), expected, rtol=1e-9
    )
