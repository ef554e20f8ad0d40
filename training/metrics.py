"""Metrics of out-of-time predictions, and the tables behind them.

`metrics` is what every run logs per origin: ROC AUC, PR AUC, log loss and Brier
(scikit-learn's functions), the expected calibration error, and lift and capture
rate in the top decile. The calibration and decile tables are public (lists of
dicts, loggable as JSON) and drawn by training/plots.py.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

DECILES = 10
EPS = 1e-15


def checked(
    y: ArrayLike, p: ArrayLike, *, probabilities: bool = True
) -> tuple[NDArray[np.int_], NDArray[np.float64]]:
    """y as 0/1 ints and p as floats, one value per row, finite; p in [0, 1] when
    it must be a probability rather than any ranking score."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(
            f"y and p must be 1-D of one length, got shapes {y.shape} and {p.shape}"
        )
    if y.size == 0:
        raise ValueError("y and p are empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y must hold only 0 and 1, got {np.unique(y)[:5]}")
    if not np.isfinite(p).all():
        raise ValueError(f"p has {int((~np.isfinite(p)).sum())} non-finite values")
    if probabilities and ((p < 0) | (p > 1)).any():
        raise ValueError(f"p must lie in [0, 1], got [{p.min()}, {p.max()}]")
    return y.astype(int), p


def calibration_table(y: ArrayLike, p: ArrayLike, bins: int = 10) -> list[dict]:
    """Mean predicted probability and observed frequency per uniform bin of p.

    The bins split [0, 1] into `bins` equal intervals [lower, upper), the last one
    closed so that p = 1 counts. Bins without predictions are left out, so every
    row has n > 0 and its means are defined; the counts sum to len(y).
    """
    y, p = checked(y, p)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    # Edges i / bins, the floats reported as lower and upper (np.linspace would
    # give 0.30000000000000004 and put p = 0.3 below its edge).
    edges = np.arange(bins + 1) / bins
    index = np.searchsorted(edges[1:-1], p, side="right")
    n = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    return [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "n": int(n[i]),
            "mean_predicted": float(sum_p[i] / n[i]),
            "observed": float(sum_y[i] / n[i]),
        }
        for i in range(bins)
        if n[i] > 0
    ]


def ece_of(table: list[dict]) -> float:
    n = sum(row["n"] for row in table)
    gaps = (row["n"] * abs(row["mean_predicted"] - row["observed"]) for row in table)
    return float(sum(gaps) / n)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: |mean p - mean y| per uniform bin of p (as in
    `calibration_table`), averaged with the bins' row counts as weights.

    0 for perfect calibration up to sampling noise and the binning; it cannot see
    errors that cancel within a bin.
    """
    return ece_of(calibration_table(y, p, bins))


def ranked(p: NDArray[np.float64]) -> NDArray[np.intp]:
    """Row indices from the highest score down; ties keep the input order."""
    return np.argsort(-p, kind="stable")


def decile_table(y: ArrayLike, p: ArrayLike) -> list[dict]:
    """Rows ranked by score and cut into ten groups, decile 1 the highest scores.

    Deciles are by rank, not by score value, so their sizes differ by at most one
    (the larger ones first) whatever the ties; tied scores keep the input order.
    Per decile: n, positives, rate (positives / n), lift (rate / overall rate) and
    cumulative capture (share of all positives in this and the higher deciles).
    """
    y, p = checked(y, p, probabilities=False)
    if y.size < DECILES:
        raise ValueError(f"deciles need at least {DECILES} rows, got {y.size}")
    total = int(y.sum())
    if total == 0:
        raise ValueError("lift and capture are undefined without positives in y")
    prevalence = total / y.size
    captured = 0
    table = []
    for decile, rows in enumerate(np.array_split(ranked(p), DECILES), start=1):
        positives = int(y[rows].sum())
        captured += positives
        rate = positives / rows.size
        table.append(
            {
                "decile": decile,
                "n": int(rows.size),
                "positives": positives,
                "rate": rate,
                "lift": rate / prevalence,
                "cumulative_capture": captured / total,
            }
        )
    return table


def top_decile(y: ArrayLike, p: ArrayLike) -> tuple[float, float]:
    """(lift, capture rate) of the highest-scored tenth of rows: decile 1 of
    `decile_table`."""
    top = decile_table(y, p)[0]
    return top["lift"], top["cumulative_capture"]


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier, expected calibration
    error, and lift and capture rate in the top decile."""
    y, p = checked(y, p)
    p = np.clip(p, EPS, 1 - EPS)
    lift, capture = top_decile(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift,
        "capture_top_decile": capture,
        "positive_rate": float(y.mean()),
    }
