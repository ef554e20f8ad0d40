"""Qini curve, coefficient and uplift at k against a plain reference: a loop over
the distinct score thresholds, counting the groups by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import uplift_metrics as um


def reference_curve(score, y, t):
    """The Qini curve, one threshold at a time (the definition, slowly)."""
    score, y, t = map(np.asarray, (score, y, t))
    n = len(score)
    xs, qs = [0.0], [0.0]
    for threshold in sorted(set(score.tolist()), reverse=True):
        top = score >= threshold
        n_t = int((top & (t == 1)).sum())
        n_c = int((top & (t == 0)).sum())
        y_t = int((top & (t == 1) & (y == 1)).sum())
        y_c = int((top & (t == 0) & (y == 1)).sum())
        q = y_t - (y_c * n_t / n_c if n_c else 0.0)
        xs.append(top.sum() / n)
        qs.append(q / n)
    return np.array(xs), np.array(qs)


def reference_coefficient(score, y, t):
    x, q = reference_curve(score, y, t)
    area = sum((x[i] - x[i - 1]) * (q[i] + q[i - 1]) / 2 for i in range(1, len(x)))
    return area - q[-1] / 2


def reference_uplift_at(score, y, t, k):
    score, y, t = map(np.asarray, (score, y, t))
    top = np.argsort(-score, kind="stable")[: math.ceil(k * len(score))]
    treated = [y[i] for i in top if t[i] == 1]
    control = [y[i] for i in top if t[i] == 0]
    return sum(treated) / len(treated) - sum(control) / len(control)


@pytest.fixture(params=[0, 1, 2])
def campaign(request):
    """A random campaign with a true effect rising with the score, and ties
    (scores rounded to one decimal)."""
    rng = np.random.default_rng(request.param)
    n = 400
    score = np.round(rng.uniform(size=n), 1)
    t = rng.integers(0, 2, n)
    y = (rng.uniform(size=n) < 0.1 + 0.3 * score * t).astype(int)
    return score, y, t


def test_curve_matches_the_reference(campaign) -> None:
    x, q = um.qini_curve(*campaign)
    rx, rq = reference_curve(*campaign)
    np.testing.assert_allclose(x, rx)
    np.testing.assert_allclose(q, rq)


def test_coefficient_matches_the_reference(campaign) -> None:
    assert um.qini_coefficient(*campaign) == pytest.approx(
        reference_coefficient(*campaign)
    )


@pytest.mark.parametrize("k", [0.1, 0.2, 0.3, 1.0])
def test_uplift_at_matches_the_reference(campaign, k) -> None:
    score, y, t = campaign
    # distinct scores: the top k is one set whatever the order of ties
    score = score + np.arange(len(score)) * 1e-9
    assert um.uplift_at(score, y, t, k) == pytest.approx(
        reference_uplift_at(score, y, t, k)
    )


def test_a_ranking_by_the_true_effect_beats_its_reverse(campaign) -> None:
    score, y, t = campaign
    assert um.qini_coefficient(score, y, t) > 0
    assert um.qini_coefficient(-score, y, t) < 0


def test_known_values_of_a_tiny_campaign() -> None:
    # ranked: T1 (y=1), C (y=0), T (y=0), C (y=1)
    score, y, t = [4, 3, 2, 1], [1, 0, 0, 1], [1, 0, 1, 0]
    x, q = um.qini_curve(score, y, t)
    # after 1: 1 - 0; after 2: 1 - 0 * 1/1; after 3: 1 - 0 * 2/1; after 4: 1 - 1*2/2
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q, [0, 0.25, 0.25, 0.25, 0])
    # trapezoids: 0.03125 + 0.0625 + 0.0625 + 0.03125; random line ends at 0
    assert um.qini_coefficient(score, y, t) == pytest.approx(0.1875)
    assert um.uplift_at(score, y, t, 0.5) == pytest.approx(1.0)
    assert math.isnan(um.uplift_at(score, y, t, 0.25))


def test_ties_are_one_step_whatever_their_order() -> None:
    y, t = np.array([1, 0, 0, 1, 1, 0]), np.array([1, 0, 1, 0, 1, 0])
    score = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    flipped = um.qini_coefficient(score[::-1], y[::-1], t[::-1])
    assert um.qini_coefficient(score, y, t) == pytest.approx(flipped)


def test_mean_and_spread() -> None:
    out = um.mean_and_spread([{"qini": 1.0}, {"qini": 3.0}, {"qini": math.nan}])
    assert out["qini"] == 2.0
    assert out["qini_std"] == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize(
    ("score", "y", "t", "match"),
    [
        ([0.1, 0.2], [1], [0, 1], "equal length"),
        ([], [], [], "no customers"),
        ([0.1, math.nan], [1, 0], [0, 1], "finite"),
        ([0.1, 0.2], [2, 0], [0, 1], "0 or 1"),
    ],
)
def test_bad_input_is_refused(score, y, t, match) -> None:
    with pytest.raises(ValueError, match=match):
        um.qini_coefficient(score, y, t)


def test_k_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="k: a share"):
        um.uplift_at([1, 2], [0, 1], [0, 1], 0)
