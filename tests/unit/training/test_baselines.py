"""The logistic baseline's median imputer against scikit-learn's own."""

from __future__ import annotations

import numpy as np
from sklearn.impute import SimpleImputer

from training.baselines import MedianImputer


def test_the_median_imputer_equals_scikit_learns() -> None:
    """Same medians (even and odd counts, ties, an all-missing column kept as
    0), same indicator columns, same output; and the default strategy still
    handled by scikit-learn."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(2001, 7))
    x[rng.uniform(size=x.shape) < 0.3] = np.nan
    x[:, 2] = np.nan  # a window longer than the history
    x[:, 3] = np.round(x[:, 3])  # ties
    x[:, 4] = 1.0  # nothing missing: no indicator
    x[:1000, 5] = np.nan  # an even count left
    settings = {"strategy": "median", "add_indicator": True}
    settings["keep_empty_features"] = True
    ours = MedianImputer(**settings).fit(x)
    theirs = SimpleImputer(**settings).fit(x)
    assert np.array_equal(ours.statistics_, theirs.statistics_)
    assert ours.statistics_[2] == 0.0
    assert list(ours.indicator_.features_) == list(theirs.indicator_.features_)
    assert 4 not in ours.indicator_.features_
    assert np.array_equal(ours.transform(x), theirs.transform(x), equal_nan=True)
    mean = MedianImputer(strategy="mean").fit(x)
    assert np.allclose(mean.statistics_[[0, 1]], np.nanmean(x[:, [0, 1]], axis=0))
