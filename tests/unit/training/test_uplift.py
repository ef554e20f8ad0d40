"""Uplift learners and their evaluation on a seeded campaign whose effect is
known: contact raises the outcome for customers with high `x0`, lowers it for
a few ("sleeping dogs": high `x1`), and the baseline risk rises with `x2`
(which the effect ignores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config.training import UpliftConfig
from features.columns import CUSTOMER_ID
from model.encoding import Encoding
from training import uplift
from training.uplift import OUTCOME_COLUMN, TREATED_COLUMN

SETTINGS = UpliftConfig(num_boost_round=60, min_data_in_leaf=50, num_threads=1)


def campaign(n: int = 6000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 3))
    effect = 0.25 * (x[:, 0] > 0.6) - 0.15 * (x[:, 1] > 0.85)
    base = 0.05 + 0.5 * x[:, 2]
    treated = rng.integers(0, 2, n)
    p = np.clip(base + effect * treated, 0, 1)
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame[CUSTOMER_ID] = [f"C{i:05d}" for i in range(n)]
    frame[TREATED_COLUMN] = treated
    frame[OUTCOME_COLUMN] = (rng.uniform(size=n) < p).astype(int)
    return frame, effect


ENCODING = Encoding(("x0", "x1", "x2"), {})


def test_held_out_is_stable_and_about_the_share() -> None:
    ids = [f"C{i}" for i in range(5000)]
    first = uplift.held_out(ids, 0, 0.3)
    assert np.array_equal(first, uplift.held_out(ids[::-1], 0, 0.3)[::-1])
    assert 0.27 < first.mean() < 0.33
    # another split holds out other customers
    assert (first != uplift.held_out(ids, 1, 0.3)).mean() > 0.3


@pytest.mark.parametrize("learner", ["t", "x"])
def test_learners_find_the_effect(learner: str) -> None:
    frame, effect = campaign()
    model = uplift.fit(
        learner,
        ENCODING.to_matrix(frame),
        frame[TREATED_COLUMN].to_numpy(),
        frame[OUTCOME_COLUMN].to_numpy(),
        ENCODING,
        "purchase",
        SETTINGS,
    )
    tau = model.predict(ENCODING.to_matrix(frame))
    assert np.corrcoef(tau, effect)[0, 1] > 0.6
    assert tau[effect > 0].mean() > 0.1 > tau[effect < 0].mean()
    # churn: the benefit is the fall in the outcome
    model.target = "churn"
    np.testing.assert_allclose(model.benefit(ENCODING.to_matrix(frame)), -tau)


def test_uplift_beats_probability_and_random_on_held_out_customers() -> None:
    frame, _ = campaign()
    evaluation = uplift.evaluate(frame, ENCODING, "purchase", SETTINGS, splits=3)
    means = evaluation.summary()
    assert len(evaluation.per_split) == 3
    best = means[evaluation.best_learner()]["qini"]
    assert best > means[uplift.PROBABILITY]["qini"]
    assert best > means[uplift.RANDOM]["qini"]
    assert means["x"]["qini_std"] >= 0
    assert "treated" in evaluation.probability_source


def test_the_logged_score_is_the_probability_ranking() -> None:
    frame, _ = campaign(3000)
    frame["score"] = frame["x2"]
    evaluation = uplift.evaluate(frame, ENCODING, "purchase", SETTINGS, splits=1)
    assert evaluation.probability_source.startswith("the score at selection")


def test_too_small_a_control_is_refused() -> None:
    frame, _ = campaign(3000)
    frame[TREATED_COLUMN] = 1
    frame.loc[:9, TREATED_COLUMN] = 0
    with pytest.raises(uplift.UpliftSkipped, match="control group: 10 customer"):
        uplift.evaluate(frame, ENCODING, "purchase", SETTINGS)


def test_the_gate() -> None:
    assert uplift._decide(0.01, None, None)[0]
    assert not uplift._decide(-0.01, None, None)[0]
    assert uplift._decide(0.02, 0.01, "1") == (
        True,
        "held-out Qini 0.020000 against champion v1's 0.010000 on the same customers",
    )
    assert not uplift._decide(0.01, 0.02, "1")[0]
