"""The readout's statistics against published values and scipy's own tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from serving.outreach.stats import (
    FISHER,
    Z_TEST,
    Moments,
    mean_interval,
    newcombe,
    proportions_test,
    ratio_of_means_lift,
    risk_ratio_lift,
    sample_ratio,
    welch,
    wilson,
)


def test_newcombe_reproduces_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17, 873-890, method 10:
    # 56/70 - 48/80 = 0.2000, 95% CI 0.0524 to 0.3339
    found = newcombe(56, 70, 48, 80)
    assert found.value == pytest.approx(0.2)
    assert found.low == pytest.approx(0.0524, abs=5e-5)
    assert found.high == pytest.approx(0.3339, abs=5e-5)


def test_wilson_reproduces_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17, 857-872, Table II:
    # 0/10 -> 0 to 0.2775; 81/263 -> 0.2553 to 0.3662
    assert (wilson(0, 10).low, round(wilson(0, 10).high, 4)) == (0.0, 0.2775)
    found = wilson(81, 263)
    assert (round(found.low, 4), round(found.high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 0).value is None


def test_proportions_test_is_z_or_fisher_when_counts_are_small() -> None:
    p, method = proportions_test(3894, 21307, 2262, 21306)
    assert method == Z_TEST and p < 1e-100
    table = np.array([[3894, 21307 - 3894], [2262, 21306 - 2262]])
    chi2 = sps.chi2_contingency(table, correction=False)
    assert p == pytest.approx(chi2.pvalue, rel=1e-6)
    p, method = proportions_test(2, 20, 0, 20)
    assert method == FISHER
    assert p == pytest.approx(sps.fisher_exact([[2, 18], [0, 20]]).pvalue)


def test_relative_lift_is_undefined_without_outcomes() -> None:
    lift = risk_ratio_lift(30, 100, 20, 100)
    assert lift.value == pytest.approx(0.5)
    assert lift.low < 0.5 < lift.high
    assert risk_ratio_lift(3, 100, 0, 100).value is None


def moments(values: np.ndarray) -> Moments:
    return Moments(len(values), float(values.sum()), float((values**2).sum()))


def test_revenue_interval_is_welchs() -> None:
    rng = np.random.default_rng(7)
    # mostly zero, a few large spends: revenue per customer as it is
    a = rng.binomial(1, 0.02, 5000) * rng.gamma(2, 60, 5000)
    b = rng.binomial(1, 0.01, 4000) * rng.gamma(2, 50, 4000)
    lift, p = welch(moments(a), moments(b))
    reference = sps.ttest_ind(a, b, equal_var=False)
    ci = reference.confidence_interval(0.95)
    assert lift.value == pytest.approx(a.mean() - b.mean())
    assert (lift.low, lift.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert p == pytest.approx(reference.pvalue)
    single = mean_interval(moments(a))
    one = sps.ttest_1samp(a, 0).confidence_interval(0.95)
    assert (single.low, single.high) == (
        pytest.approx(one.low),
        pytest.approx(one.high),
    )
    relative = ratio_of_means_lift(moments(a), moments(b))
    assert relative.value == pytest.approx(a.mean() / b.mean() - 1)
    assert relative.low < relative.value < relative.high
    assert welch(moments(a[:1]), moments(b))[1] is None


def test_sample_ratio_flags_a_skewed_split() -> None:
    fair = sample_ratio(control=1030, treatment=8970, share=0.10)
    assert not fair.mismatch and fair.p_value > 0.001
    skewed = sample_ratio(control=1200, treatment=8800, share=0.10)
    assert skewed.mismatch and skewed.p_value < 1e-9
    assert skewed.observed_control_share == pytest.approx(0.12)
    # chi-square with 1 df: (200^2 / 1000 + 200^2 / 9000)
    assert skewed.chi_square == pytest.approx(40 + 40 / 9)
    assert sample_ratio(0, 50, 0.0).mismatch is False
    assert sample_ratio(3, 50, 0.0).mismatch is True
