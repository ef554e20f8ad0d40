"""Evaluation tables and figures on seeded synthetic scores with known calibration
and ranking."""

from __future__ import annotations

import numpy as np
import pytest

from training.plots import (
    calibration_table,
    decile_table,
    expected_calibration_error,
    top_decile,
)


def bernoulli(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """p uniform on [0, 1] and y ~ Bernoulli(p): perfectly calibrated scores."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return (rng.uniform(size=n) < p).astype(int), p


def ranked(n: int, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """A perfect ranking: the positives have the highest scores."""
    y = np.zeros(n, dtype=int)
    y[:positives] = 1
    return y, np.linspace(1.0, 0.0, n)


# Calibration


def test_ece_of_calibrated_scores_is_small() -> None:
    y, p = bernoulli(200_000)
    assert expected_calibration_error(y, p) < 0.01


def test_ece_of_cubed_scores_is_large() -> None:
    # Observed frequency p against predicted p**3: integral of p - p**3 is 1/4.
    y, p = bernoulli(200_000)
    assert expected_calibration_error(y, p**3) > 0.2


def test_ece_known_value() -> None:
    y = [0, 1, 0, 1]
    p = [0.05, 0.15, 0.15, 1.0]
    # Bins [0, .1): |.05 - 0|, [.1, .2): |.15 - .5| twice, [.9, 1]: |1 - 1|.
    assert expected_calibration_error(y, p) == pytest.approx((0.05 + 2 * 0.35) / 4)


def test_calibration_table_bins() -> None:
    y, p = bernoulli(10_000, seed=1)
    table = calibration_table(y, p, bins=10)
    assert sum(row["n"] for row in table) == y.size
    assert [row["lower"] for row in table] == pytest.approx(np.arange(10) / 10)
    for row in table:
        assert row["lower"] <= row["mean_predicted"] < row["upper"]


def test_calibration_table_edges() -> None:
    # A value on an inner edge opens the upper bin; 1.0 closes the last bin;
    # empty bins are left out.
    table = calibration_table([0, 1, 1], [0.0, 0.5, 1.0], bins=4)
    assert [(row["lower"], row["n"]) for row in table] == [
        (0.0, 1),
        (0.5, 1),
        (0.75, 1),
    ]


@pytest.mark.parametrize("bins", [10, 22])
def test_value_on_an_edge_opens_its_bin(bins: int) -> None:
    # 0.3 with 10 bins and 15/22 with 22 fall below their edge if the edges or
    # the bin index are rounded differently from the lower bounds reported.
    for i in range(bins):
        (row,) = calibration_table([1], [i / bins], bins=bins)
        assert row["lower"] == i / bins


def test_calibration_table_constant_predictions() -> None:
    table = calibration_table([0, 1, 1, 0], [0.3] * 4)
    assert table == [
        {"lower": 0.3, "upper": 0.4, "n": 4, "mean_predicted": 0.3, "observed": 0.5}
    ]


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], [0.5], "one length"),
        ([], [], "empty"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, np.nan], "non-finite"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
    ],
)
def test_calibration_rejects_bad_input(y: list, p: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y, p)


def test_calibration_rejects_no_bins() -> None:
    with pytest.raises(ValueError, match="bins"):
        calibration_table([0, 1], [0.1, 0.9], bins=0)


# Deciles


@pytest.mark.parametrize("n", [10, 105, 1_000, 9_999])
def test_decile_sizes_and_positives(n: int) -> None:
    y, p = bernoulli(n, seed=n)
    y[0] = 1
    table = decile_table(y, p)
    assert [row["decile"] for row in table] == list(range(1, 11))
    sizes = [row["n"] for row in table]
    assert sum(sizes) == n
    assert max(sizes) - min(sizes) <= 1
    assert sum(row["positives"] for row in table) == y.sum()
    assert table[-1]["cumulative_capture"] == pytest.approx(1.0)


def test_perfect_ranking_top_decile() -> None:
    # 5% positives all fit in the top 10%: rate .5 against .05 overall.
    y, p = ranked(1_000, positives=50)
    table = decile_table(y, p)
    assert table[0]["positives"] == 50
    assert table[0]["lift"] == pytest.approx(10.0)
    assert table[0]["cumulative_capture"] == 1.0
    assert [row["lift"] for row in table[1:]] == [0.0] * 9


def test_perfect_ranking_more_positives_than_the_top_decile() -> None:
    # 20% positives: the top decile is all positives, lift 1 / .2, capture half.
    assert top_decile(*ranked(1_000, positives=200)) == pytest.approx((5.0, 0.5))


def test_random_ranking_has_lift_one() -> None:
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=200_000) < 0.1).astype(int)
    table = decile_table(y, rng.uniform(size=y.size))
    assert [row["lift"] for row in table] == pytest.approx([1.0] * 10, abs=0.1)


def test_ties_keep_input_order() -> None:
    y = np.r_[np.ones(10, dtype=int), np.zeros(90, dtype=int)]
    table = decile_table(y, np.full(100, 0.5))
    assert [row["positives"] for row in table] == [10] + [0] * 9
    assert decile_table(y[::-1], np.full(100, 0.5))[-1]["positives"] == 10


def test_top_decile_agrees_with_table() -> None:
    y, p = bernoulli(5_003, seed=3)
    top = decile_table(y, p)[0]
    assert top_decile(y, p) == (top["lift"], top["cumulative_capture"])
    assert top["lift"] > 1.5


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1] * 4, np.linspace(0, 1, 8), "at least 10 rows"),
        ([0] * 20, np.linspace(0, 1, 20), "without positives"),
        ([1] * 20, np.linspace(0, 1, 21), "one length"),
    ],
)
def test_deciles_reject_bad_input(y: list, p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        top_decile(y, p)
