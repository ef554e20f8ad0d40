"""The served blend: numpy only, the same numbers after a round trip."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from model.blend import ONE_THREAD_ROWS, Blend, Linear, blend_raw, served_raw


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


def test_served_raw_on_one_thread_is_the_same_numbers() -> None:
    """Spark's scoring tasks cap LightGBM at the task's cores: the figures
    may not move with it (the nightly promises predict_frame's, bit for bit)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 3))
    y = (x[:, 0] + rng.normal(size=3000) > 0).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 2}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=20)
    matrix = rng.normal(size=(5000, 3))
    blend = Blend(0.8, 0.3, 0.1, _linear())
    for b in (None, blend):
        np.testing.assert_array_equal(
            served_raw(booster, b, matrix, threads=1), served_raw(booster, b, matrix)
        )


class _Counting:
    """A booster whose predict calls are recorded (their `num_threads`)."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster, self.threads = booster, []

    def predict(self, matrix, **kwargs):
        self.threads.append(kwargs.get("num_threads"))
        return self.booster.predict(matrix, **kwargs)


def test_an_api_sized_matrix_is_predicted_on_one_thread() -> None:
    """A request's few rows skip OpenMP's parallel region (waking the pool
    and waiting for it costs more than their trees); a batch keeps LightGBM's
    threads; a caller's cap wins; the numbers are the same either way."""
    booster = _booster()
    rng = np.random.default_rng(3)
    few = rng.normal(size=(ONE_THREAD_ROWS - 1, 3))
    many = np.vstack([few, rng.normal(size=(500, 3))])
    counting = _Counting(booster)
    small = served_raw(counting, None, few)
    large = served_raw(counting, None, many)
    served_raw(counting, None, few, threads=2)
    assert counting.threads == [1, None, 2]
    np.testing.assert_array_equal(small, large[: len(few)])


def test_a_row_has_the_same_margin_alone_as_among_many() -> None:
    """The API scores a few records, the nightly job every customer at once:
    predict_by_id promises the nightly's numbers bit for bit, so the linear margin
    of a row may not depend on how many rows share the call (a BLAS product's
    rounding does)."""
    rng = np.random.default_rng(4)
    width = 120
    linear = Linear(
        numeric=list(range(width)),
        medians=list(rng.normal(size=width)),
        indicators=list(range(0, width, 3)),
        means=list(rng.normal(size=width + 40)),
        scales=list(rng.uniform(0.5, 2, size=width + 40)),
        categorical=[],
        categories=[],
        coef=list(rng.normal(size=width + 40)),
        intercept=0.3,
    )
    matrix = rng.normal(size=(1_000, width)) * 10
    matrix[rng.uniform(size=matrix.shape) < 0.1] = np.nan
    together = linear.margin(matrix)
    for size in (1, 3, 64):
        apart = np.concatenate(
            [linear.margin(matrix[i : i + size]) for i in range(0, 300, size)]
        )
        np.testing.assert_array_equal(apart, together[: len(apart)])
