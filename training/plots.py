"""Evaluation figures for a run: pure functions from arrays to matplotlib Figures.

Each figure is a `matplotlib.figure.Figure` built directly on the Agg canvas, never
through pyplot: no global figure registry or current figure is touched, so figures
built in different threads share no state, are freed with their last reference
and need no display. The caller logs them, e.g.
`mlflow.log_figure(fig, "plots/roc_pr.png")`. The tables behind the calibration
and lift figures are public too, as lists of dicts that can be logged as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from training.metrics import (
    DECILES,
    calibration_table,
    checked,
    decile_table,
    ece_of,
    ranked,
)

DPI = 100
MODEL = "model"
REFERENCE = {"color": "grey", "linestyle": "--", "linewidth": 1}
MISSING_COLOUR = "0.6"
# Low to high feature values through purple, so that no value looks missing (grey).
VALUE_COLOURS = LinearSegmentedColormap.from_list("low_high", ["#1e88e5", "#ff0d57"])
# Histogram bins under the reliability diagram, points kept on the gains curve,
# rows drawn per feature in the contribution summary (a seeded sample above it).
HISTOGRAM_BINS = 50
GAINS_POINTS = 1_000
SUMMARY_ROWS = 5_000


def _figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas, outside pyplot's registry of open figures."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def roc_pr(
    y: ArrayLike, p: ArrayLike, baselines: Mapping[str, ArrayLike] | None = None
) -> Figure:
    """ROC (left) and precision-recall (right) curves of the model and each
    baseline, labelled with ROC AUC and average precision.

    The references are what a random ranking gets: the diagonal for ROC and the
    prevalence for precision. Baseline scores need only rank, not be probabilities.
    """
    y, p = checked(y, p, probabilities=False)
    if y.min() == y.max():
        raise ValueError("ROC and precision-recall curves need both classes in y")
    scores = {MODEL: p}
    for name, score in (baselines or {}).items():
        if name == MODEL:
            raise ValueError(f"a baseline cannot be called {MODEL!r}, the model is")
        scores[name] = checked(y, score, probabilities=False)[1]
    figure = _figure(10, 4.5)
    roc, pr = figure.subplots(1, 2)
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})")
        precision, recall, _ = precision_recall_curve(y, score, drop_intermediate=True)
        label = f"{name} (AP {average_precision_score(y, score):.3f})"
        pr.plot(recall, precision, drawstyle="steps-post", label=label)
    prevalence = y.mean()
    roc.plot([0, 1], [0, 1], **REFERENCE, label="random (AUC 0.500)")
    pr.axhline(prevalence, **REFERENCE, label=f"random (prevalence {prevalence:.3f})")
    roc.set(
        title="ROC curve",
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    pr.set(
        title="Precision-recall curve",
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    roc.legend(loc="lower right", fontsize="small")
    pr.legend(loc="upper right", fontsize="small")
    return figure


def reliability(
    y: ArrayLike,
    p_raw: ArrayLike,
    p_calibrated: ArrayLike | None = None,
    bins: int = 10,
) -> Figure:
    """Reliability diagram: observed frequency against mean predicted probability
    per bin, for the raw and (if given) calibrated predictions, with their expected
    calibration error in the legend; a histogram of the predictions underneath.

    Bins are uniform, `bins` equal intervals of [0, 1] (see `calibration_table`),
    not quantiles: the same bins for both predictions and for every run, so
    diagrams compare. The price is sparse bins where few predictions fall, which
    the histogram (log counts) shows.
    """
    predictions = {"raw": p_raw}
    if p_calibrated is not None:
        predictions["calibrated"] = p_calibrated
    figure = _figure(6, 5)
    curve, histogram = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve.plot([0, 1], [0, 1], **REFERENCE, label="perfectly calibrated")
    for name, scores in predictions.items():
        table = calibration_table(y, scores, bins)
        curve.plot(
            [row["mean_predicted"] for row in table],
            [row["observed"] for row in table],
            marker="o",
            label=f"{name} (ECE {ece_of(table):.4f})",
        )
        histogram.hist(
            np.asarray(scores, dtype=float),
            bins=HISTOGRAM_BINS,
            range=(0, 1),
            histtype="step",
            log=True,
            label=name,
        )
    curve.set(
        title=f"Reliability ({bins} uniform bins)",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    curve.legend(loc="upper left", fontsize="small")
    histogram.set(xlabel="predicted probability", ylabel="rows")
    histogram.legend(loc="upper right", fontsize="small")
    return figure


def gains_lift(y: ArrayLike, p: ArrayLike) -> Figure:
    """Cumulative gains (share of positives captured against share of rows
    contacted, best scores first) beside the lift of each decile.

    References: random contact (the diagonal, lift 1) and a perfect ranking. Rows
    are ranked as in `decile_table`, ties in input order.
    """
    table = decile_table(y, p)
    y, p = checked(y, p, probabilities=False)
    captured = np.r_[0, np.cumsum(y[ranked(p)])] / y.sum()
    keep = np.unique(np.linspace(0, y.size, GAINS_POINTS + 1).round().astype(int))
    prevalence = y.mean()
    figure = _figure(10, 4.5)
    gains, lift = figure.subplots(1, 2)
    gains.plot(keep / y.size, captured[keep], label=MODEL)
    gains.plot([0, prevalence, 1], [0, 1, 1], **REFERENCE, alpha=0.5, label="perfect")
    gains.plot([0, 1], [0, 1], **REFERENCE, label="random")
    gains.set(
        title="Cumulative gains",
        xlabel="share of rows contacted (highest scores first)",
        ylabel="share of positives captured",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    gains.legend(loc="lower right", fontsize="small")
    lift.bar(
        [row["decile"] for row in table], [row["lift"] for row in table], label=MODEL
    )
    lift.axhline(1, **REFERENCE, label="random (lift 1)")
    lift.set(
        title="Lift by decile",
        xlabel="decile (1 = highest scores)",
        ylabel="lift (decile rate / overall rate)",
        xticks=range(1, DECILES + 1),
    )
    lift.legend(loc="upper right", fontsize="small")
    return figure


def _names(names: list[str], columns: int) -> None:
    if len(names) != columns:
        raise ValueError(f"{len(names)} names for {columns} features")


def _top(top: int) -> None:
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")


def importance(names: list[str], gain: ArrayLike, top: int = 25) -> Figure:
    """Horizontal bars of the `top` features by gain importance, largest on top,
    as shares of the total gain so that models compare."""
    gain = np.asarray(gain, dtype=float)
    if gain.ndim != 1 or not np.isfinite(gain).all():
        raise ValueError(f"gain must be 1-D and finite, got shape {gain.shape}")
    _names(names, gain.size)
    _top(top)
    order = np.argsort(-gain, kind="stable")[:top]
    total = gain.sum()
    share = 100 * gain[order] / total if total > 0 else np.zeros(order.size)
    figure = _figure(8, 5)
    axes = figure.subplots()
    axes.barh(range(order.size), share, label="gain")
    axes.set_yticks(range(order.size), [names[i] for i in order], fontsize="x-small")
    axes.invert_yaxis()
    axes.set(
        title=f"Feature importance: top {order.size} of {gain.size} by gain",
        xlabel="share of total split gain (%)",
        ylabel="feature",
    )
    axes.legend(loc="lower right", fontsize="small")
    return figure


def _value_rank(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rank of each value among the others scaled to [0, 1] (ties share a rank,
    a lone or constant value is 0.5)."""
    if values.size < 2:
        return np.full(values.size, 0.5)
    return (rankdata(values) - 1) / (values.size - 1)


def contribution_summary(
    names: list[str], contrib: ArrayLike, values: ArrayLike, top: int = 20
) -> Figure:
    """SHAP-style summary of per-row contributions to the log-odds.

    `contrib` is LightGBM's `predict(x, pred_contrib=True)` without its last
    (bias) column and `values` the feature matrix it was computed on. For the
    `top` features by mean |contribution| (largest on top), each row is a point
    at its contribution, jittered vertically, coloured by the rank of the
    feature's value among the rows drawn (NaN grey, drawn on top). Above
    `SUMMARY_ROWS` rows a seeded sample is drawn; the feature order uses all rows.
    """
    contrib = np.asarray(contrib, dtype=float)
    values = np.asarray(values, dtype=float)
    if contrib.ndim != 2 or values.shape != contrib.shape or contrib.shape[0] == 0:
        raise ValueError(
            "contrib and values must be non-empty matrices of one shape, got "
            f"{contrib.shape} and {values.shape}"
        )
    if not np.isfinite(contrib).all():
        raise ValueError("contrib must be finite")
    _names(names, contrib.shape[1])
    _top(top)
    order = np.argsort(-np.abs(contrib).mean(axis=0), kind="stable")[:top]
    rng = np.random.default_rng(0)
    rows = np.arange(contrib.shape[0])
    if rows.size > SUMMARY_ROWS:
        rows = np.sort(rng.choice(rows, SUMMARY_ROWS, replace=False))
    figure = _figure(8, 5)
    axes = figure.subplots()
    axes.axvline(0, color="grey", linewidth=0.8)
    for position, feature in enumerate(order):
        x = contrib[rows, feature]
        level = order.size - 1 - position + rng.uniform(-0.35, 0.35, rows.size)
        value = values[rows, feature]
        missing = np.isnan(value)
        axes.scatter(
            x[~missing],
            level[~missing],
            s=4,
            c=_value_rank(value[~missing]),
            cmap=VALUE_COLOURS,
            vmin=0,
            vmax=1,
        )
        # On top: NaN rows share LightGBM's default branch, so they cluster.
        axes.scatter(x[missing], level[missing], s=4, color=MISSING_COLOUR)
    labels = [names[i] for i in order[::-1]]
    axes.set_yticks(range(order.size), labels, fontsize="x-small")
    axes.set(
        title=f"Contributions: top {order.size} of {len(names)} features",
        xlabel="contribution to the log-odds (row)",
        ylabel="feature",
    )
    bar = figure.colorbar(
        ScalarMappable(Normalize(0, 1), VALUE_COLOURS), ax=axes, ticks=[0, 1]
    )
    bar.set_ticklabels(["low", "high"])
    bar.set_label("feature value (rank among rows)")
    nan = Line2D([], [], marker="o", linestyle="", color=MISSING_COLOUR)
    axes.legend([nan], ["missing value"], loc="lower right", fontsize="small")
    return figure


def origins_over_time(rows: list[dict], metric: str) -> Figure:
    """One line per model of `metric` across backtest origins.

    `rows` are dicts with "origin" (a date or ISO date string), "model" and the
    metric; rows without the metric are left out (a model may not report it). A
    model with two rows for one origin is an error: it would draw a zigzag.
    """
    series: dict[str, dict[datetime, float]] = {}
    for row in rows:
        if metric not in row:
            continue
        origin = datetime.fromisoformat(str(row["origin"]))
        points = series.setdefault(str(row["model"]), {})
        if origin in points:
            raise ValueError(f"model {row['model']!r} has two rows for {origin.date()}")
        points[origin] = float(row[metric])
    if not series:
        raise ValueError(f"no row has the metric {metric!r}")
    figure = _figure(8, 4.5)
    axes = figure.subplots()
    for model, points in series.items():
        origins = sorted(points)
        axes.plot(origins, [points[o] for o in origins], marker="o", label=model)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set(title=f"{metric} by origin", xlabel="origin (cutoff)", ylabel=metric)
    axes.legend(fontsize="small")
    return figure


FLAGGED_COLOUR = "#d62728"
SMALL_COLOUR = "0.75"
# reliability points drawn per segment only for bins with at least this many rows
MIN_BIN_ROWS = 20


def fairness(
    rows: list[dict], curves: Mapping[str, list[dict]], ratio_line: float = 0.8
) -> Figure:
    """Per segment attribute (one row of panels each): the selection-rate ratio of
    every segment to the attribute's most-selected one, with the four-fifths line
    (flagged bars red, segments too small to flag grey, the selection rate at the
    bar's end), beside the segments' reliability curves.

    `rows` are training.fairness report rows (attribute, segment, n, selection_rate,
    selection_ratio, ece, small, four_fifths, calibration); `curves` their
    `calibration_table`s keyed "attribute=segment". Reliability points of bins
    with fewer than `MIN_BIN_ROWS` rows are left out (noise, not signal: the
    segment's ECE still counts them), and the axes end a little past the
    highest point drawn.
    """
    attributes = list(dict.fromkeys(row["attribute"] for row in rows))
    if not attributes:
        raise ValueError("no segment rows to draw")
    figure = _figure(11, 3.2 * len(attributes) + 0.5)
    panels = figure.subplots(len(attributes), 2, squeeze=False)
    for (bars, reliability_axes), attribute in zip(panels, attributes, strict=True):
        group = [row for row in rows if row["attribute"] == attribute]
        ratios = [np.nan_to_num(row["selection_ratio"]) for row in group]
        colours = [
            SMALL_COLOUR
            if row["small"]
            else FLAGGED_COLOUR
            if row["four_fifths"]
            else "C0"
            for row in group
        ]
        positions = range(len(group))
        bars.barh(positions, ratios, color=colours)
        for k, row in enumerate(group):
            bars.text(
                ratios[k],
                k,
                f" {row['selection_rate']:.1%}",
                va="center",
                fontsize="x-small",
            )
        bars.axvline(ratio_line, color=FLAGGED_COLOUR, linestyle="--", linewidth=1)
        bars.set_yticks(
            positions,
            [f"{row['segment']} (n={row['n']})" for row in group],
            fontsize="x-small",
        )
        bars.invert_yaxis()
        bars.set(
            title=f"{attribute}: selection rate / most-selected segment",
            xlabel=f"selection-rate ratio ({ratio_line:g} line: four-fifths rule)",
            xlim=(0, max(1.15, max(ratios) * 1.15)),
        )
        reliability_axes.plot([0, 1], [0, 1], **REFERENCE)
        top = 0.0
        for row in group:
            table = [
                t
                for t in curves[f"{attribute}={row['segment']}"]
                if t["n"] >= MIN_BIN_ROWS
            ]
            top = max([top, *(max(t["mean_predicted"], t["observed"]) for t in table)])
            flag = " !" if row["calibration"] else ""
            reliability_axes.plot(
                [t["mean_predicted"] for t in table],
                [t["observed"] for t in table],
                marker="o",
                markersize=3,
                linestyle=":" if row["small"] else "-",
                label=f"{row['segment']} (ECE {row['ece']:.3f}){flag}",
            )
        reliability_axes.set(
            title=f"{attribute}: reliability (bins of {MIN_BIN_ROWS}+ rows)",
            xlabel="mean predicted probability",
            ylabel="observed frequency",
            xlim=(0, min(1.0, top * 1.1 or 1.0)),
            ylim=(0, min(1.0, top * 1.1 or 1.0)),
        )
        reliability_axes.legend(loc="upper left", fontsize="x-small")
    return figure
