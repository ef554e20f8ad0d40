"""The uplift artifact: saved and loaded, it predicts what it predicted."""

from __future__ import annotations

import numpy as np
import pytest

from core.config.training import UpliftConfig
from model import uplift as artifact
from model.encoding import Encoding
from training import uplift


@pytest.mark.parametrize("learner", ["t", "x"])
def test_round_trip(tmp_path, learner: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2000, 2))
    t = rng.integers(0, 2, 2000)
    y = (rng.uniform(size=2000) < 0.2 + 0.3 * x[:, 0] * t).astype(int)
    encoding = Encoding(("a", "b"), {})
    settings = UpliftConfig(num_boost_round=20, min_data_in_leaf=20, num_threads=1)
    model = uplift.fit(learner, x, t, y, encoding, "churn", settings)
    loaded = artifact.load(model.save(tmp_path / "m"), "n", "3")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert (loaded.learner, loaded.target, loaded.version) == (learner, "churn", "3")
    assert loaded.direction == -1
    treated, control = loaded.outcome_probabilities(x)
    if learner == "t":
        np.testing.assert_allclose(loaded.predict(x), treated - control)


def test_features_must_match_the_encoding(tmp_path) -> None:
    x = np.random.default_rng(0).uniform(size=(200, 2))
    t, y = np.arange(200) % 2, (np.arange(200) // 2) % 2
    settings = UpliftConfig(num_boost_round=2, min_data_in_leaf=5, num_threads=1)
    model = uplift.fit("t", x, t, y, Encoding(("a", "b"), {}), "purchase", settings)
    with pytest.raises(ValueError, match="differ from the encoding"):
        artifact.UpliftModel(
            "t", "purchase", Encoding(("b", "a"), {}), model.boosters, 0.5
        )
    with pytest.raises(FileNotFoundError, match="not an uplift model"):
        artifact.load(tmp_path)


def test_registered_name() -> None:
    assert artifact.registered_name("acme-churn") == "acme-churn-uplift"
