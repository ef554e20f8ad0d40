"""Evaluation tables and figures on seeded synthetic scores with known calibration
and ranking."""

from __future__ import annotations

from io import BytesIO

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, roc_auc_score

from training.metrics import (
    calibration_table,
    decile_table,
    expected_calibration_error,
    top_decile,
)
from training.plots import (
    MISSING_COLOUR,
    contribution_summary,
    gains_lift,
    importance,
    origins_over_time,
    reliability,
    roc_pr,
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


def png(figure: Figure) -> bytes:
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def legend(axes: Axes) -> list[str]:
    return [text.get_text() for text in axes.get_legend().get_texts()]


def assert_figure(figure: Figure, axes: int) -> None:
    """A Figure of the agreed size with titled, labelled axes (rendering is
    `test_figures_render_to_png`, once per case, as it is the slow part)."""
    assert isinstance(figure, Figure)
    assert len(figure.axes) == axes
    assert figure.dpi == 100
    width, height = figure.get_size_inches()
    assert 6 <= width <= 10 and 4 <= height <= 5
    for ax in figure.axes:
        assert ax.get_xlabel() or ax.get_ylabel()
    assert figure.axes[0].get_title()


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


def test_ties_across_decile_edges_keep_input_order() -> None:
    # Scores rounded to one decimal: decile edges cut through tie groups, and
    # numpy's default (unstable) sort reorders them.
    y, p = bernoulli(1_000, seed=4)
    p = p.round(1)
    order = sorted(range(p.size), key=lambda i: (-p[i], i))
    expected = [y[rows].sum() for rows in np.array_split(order, 10)]
    assert [row["positives"] for row in decile_table(y, p)] == expected


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


# Figures


def test_roc_pr_labels_model_and_baselines() -> None:
    y, p = bernoulli(2_000, seed=4)
    recency = np.random.default_rng(5).uniform(size=y.size)
    figure = roc_pr(y, p, {"recency": recency, "bgnbd": p**2})
    assert_figure(figure, axes=2)
    roc, pr = figure.axes
    auc, ap = roc_auc_score(y, p), average_precision_score(y, p)
    assert legend(roc)[0] == f"model (AUC {auc:.3f})"
    assert legend(pr)[0] == f"model (AP {ap:.3f})"
    for labels in (legend(roc), legend(pr)):
        assert [label.split(" ")[0] for label in labels] == [
            "model",
            "recency",
            "bgnbd",
            "random",
        ]
    assert f"{y.mean():.3f}" in legend(pr)[-1]


def test_roc_pr_without_baselines() -> None:
    figure = roc_pr(*bernoulli(500, seed=6))
    assert_figure(figure, axes=2)
    assert len(legend(figure.axes[0])) == 2


@pytest.mark.parametrize(
    ("y", "baselines", "match"),
    [
        ([1] * 10, None, "both classes"),
        ([0, 1] * 5, {"model": np.zeros(10)}, "cannot be called"),
        ([0, 1] * 5, {"recency": np.zeros(9)}, "one length"),
    ],
)
def test_roc_pr_rejects(y: list, baselines: dict | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        roc_pr(y, np.linspace(0, 1, 10), baselines)


def test_reliability_labels_ece_of_both() -> None:
    y, p = bernoulli(5_000, seed=7)
    figure = reliability(y, p**2, p)
    assert_figure(figure, axes=2)
    curve, histogram = figure.axes
    assert legend(curve) == [
        "perfectly calibrated",
        f"raw (ECE {expected_calibration_error(y, p**2):.4f})",
        f"calibrated (ECE {expected_calibration_error(y, p):.4f})",
    ]
    assert legend(histogram) == ["raw", "calibrated"]
    assert "10 uniform bins" in curve.get_title()


def test_reliability_constant_predictions() -> None:
    figure = reliability([0, 1, 1, 0, 1], np.full(5, 0.4))
    assert legend(figure.axes[0])[1] == "raw (ECE 0.2000)"


def test_reliability_rejects_a_probability_above_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability([0, 1], [0.5, 0.5], [0.5, 1.5])


def test_gains_lift_bars_are_the_decile_lifts() -> None:
    y, p = bernoulli(3_001, seed=8)
    figure = gains_lift(y, p)
    assert_figure(figure, axes=2)
    gains, lift = figure.axes
    heights = [bar.get_height() for bar in lift.patches]
    assert heights == [row["lift"] for row in decile_table(y, p)]
    curve = gains.get_lines()[0]
    assert curve.get_xdata()[[0, -1]] == pytest.approx([0, 1])
    assert curve.get_ydata()[[0, -1]] == pytest.approx([0, 1])
    assert legend(gains) == ["model", "perfect", "random"]
    assert legend(lift) == ["random (lift 1)", "model"]


def test_gains_lift_rejects_no_positives() -> None:
    with pytest.raises(ValueError, match="without positives"):
        gains_lift(np.zeros(20, dtype=int), np.linspace(0, 1, 20))


def test_importance_largest_on_top() -> None:
    names = [f"f{i}" for i in range(40)]
    gain = np.random.default_rng(9).exponential(size=40)
    figure = importance(names, gain, top=25)
    assert_figure(figure, axes=1)
    (axes,) = figure.axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels == [names[i] for i in np.argsort(-gain)[:25]]
    assert axes.yaxis_inverted()
    shares = [bar.get_width() for bar in axes.patches]
    assert shares[0] == pytest.approx(100 * gain.max() / gain.sum())
    assert legend(axes) == ["gain"]


def test_importance_rejects_names_of_another_length() -> None:
    with pytest.raises(ValueError, match="3 names for 2 features"):
        importance(["a", "b", "c"], np.ones(2))


def contributions(n: int = 200, features: int = 30) -> tuple[np.ndarray, ...]:
    """Values with NaN, a constant column, and contributions whose scale falls
    with the column index."""
    rng = np.random.default_rng(10)
    values = rng.normal(size=(n, features))
    values[rng.uniform(size=values.shape) < 0.2] = np.nan
    values[:, 1] = 3.0
    contrib = rng.normal(size=(n, features)) * np.linspace(2, 0.1, features)
    return contrib, values


def test_contribution_summary_orders_and_greys_missing_values() -> None:
    contrib, values = contributions()
    names = [f"f{i}" for i in range(contrib.shape[1])]
    figure = contribution_summary(names, contrib, values, top=20)
    assert_figure(figure, axes=2)  # the summary and its colour bar
    axes = figure.axes[0]
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    order = np.argsort(-np.abs(contrib).mean(axis=0))[:20]
    assert labels == [names[i] for i in order[::-1]]
    grey = sum(
        len(points.get_offsets())
        for points in axes.collections
        if (points.get_facecolor() == to_rgba(MISSING_COLOUR)).all()
    )
    assert grey == np.isnan(values[:, order]).sum()
    assert legend(axes) == ["missing value"]


def test_contribution_summary_rejects_the_bias_column() -> None:
    contrib, values = contributions(n=10, features=3)
    with_bias = np.c_[contrib, np.zeros(10)]
    with pytest.raises(ValueError, match="one shape"):
        contribution_summary(["a", "b", "c"], with_bias, values)


ORIGINS = [
    {"origin": origin, "model": model, "roc_auc": auc, "log_loss": 0.3}
    for model, start in (("lightgbm", 0.8), ("recency", 0.7))
    for origin, auc in zip(
        ("2025-03-01", "2025-01-01", "2025-02-01"),
        (start + 0.02, start, start + 0.01),
        strict=True,
    )
]


def test_origins_over_time_one_line_per_model_in_date_order() -> None:
    rows = [*ORIGINS, {"origin": "2025-01-01", "model": "bgnbd", "log_loss": 0.4}]
    figure = origins_over_time(rows, "roc_auc")
    assert_figure(figure, axes=1)
    (axes,) = figure.axes
    assert legend(axes) == ["lightgbm", "recency"]
    assert axes.get_lines()[0].get_ydata() == pytest.approx([0.8, 0.81, 0.82])
    assert axes.get_ylabel() == "roc_auc"
    assert legend(origins_over_time(rows, "log_loss").axes[0]) == [
        "lightgbm",
        "recency",
        "bgnbd",
    ]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (ORIGINS, "no row has the metric 'pr_auc'"),
        ([*ORIGINS, {**ORIGINS[0], "pr_auc": 0.1}], "two rows for 2025-03-01"),
    ],
)
def test_origins_over_time_rejects(rows: list[dict], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        origins_over_time(rows, "pr_auc" if rows is ORIGINS else "roc_auc")


def all_missing_column() -> Figure:
    contrib, values = contributions(n=50, features=3)
    values[:, 0] = np.nan
    return contribution_summary(["a", "b", "c"], contrib, values)


RENDERED = {
    "roc_pr": lambda: roc_pr(*bernoulli(500), {"recency": np.linspace(0, 1, 500)}),
    "reliability": lambda: reliability(*bernoulli(500), np.full(500, 0.5)),
    "reliability_constant": lambda: reliability([0, 1, 1], np.full(3, 0.4)),
    "gains_lift": lambda: gains_lift(*bernoulli(500)),
    "importance_zero_gain": lambda: importance(["a", "b"], np.zeros(2)),
    "contribution_nan": lambda: contribution_summary(
        [f"f{i}" for i in range(30)], *contributions()
    ),
    "contribution_all_missing": all_missing_column,
    "origins": lambda: origins_over_time(ORIGINS, "roc_auc"),
}


@pytest.mark.parametrize("case", RENDERED)
def test_figures_render_to_png(case: str) -> None:
    assert png(RENDERED[case]()).startswith(b"\x89PNG")


def test_figures_stay_out_of_pyplot() -> None:
    before = plt.get_fignums()
    y, p = bernoulli(200, seed=11)
    reliability(y, p)
    importance(["a"], np.ones(1))
    assert plt.get_fignums() == before
