"""Evaluation figures for a run: pure functions from arrays to matplotlib Figures.

Each figure is a `matplotlib.figure.Figure` built directly on the Agg canvas, never
through pyplot, so no global figure registry is touched: figures are thread-safe,
are freed with their last reference and need no display. The caller logs them,
e.g. `mlflow.log_figure(fig, "plots/roc_pr.png")`. The tables behind the
calibration and lift figures are public too, as plain lists of dicts that can be
logged as JSON.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

DECILES = 10


def _checked(
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
    y, p = _checked(y, p)
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


def _ece(table: list[dict]) -> float:
    n = sum(row["n"] for row in table)
    gaps = (row["n"] * abs(row["mean_predicted"] - row["observed"]) for row in table)
    return float(sum(gaps) / n)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error: |mean p - mean y| per uniform bin of p (as in
    `calibration_table`), averaged with the bins' row counts as weights.

    0 for perfect calibration up to sampling noise and the binning; it cannot see
    errors that cancel within a bin.
    """
    return _ece(calibration_table(y, p, bins))


def _ranked(p: NDArray[np.float64]) -> NDArray[np.intp]:
    """Row indices from the highest score down; ties keep the input order."""
    return np.argsort(-p, kind="stable")


def decile_table(y: ArrayLike, p: ArrayLike) -> list[dict]:
    """Rows ranked by score and cut into ten groups, decile 1 the highest scores.

    Deciles are by rank, not by score value, so their sizes differ by at most one
    (the larger ones first) whatever the ties; tied scores keep the input order.
    Per decile: n, positives, rate (positives / n), lift (rate / overall rate) and
    cumulative capture (share of all positives in this and the higher deciles).
    """
    y, p = _checked(y, p, probabilities=False)
    if y.size < DECILES:
        raise ValueError(f"deciles need at least {DECILES} rows, got {y.size}")
    total = int(y.sum())
    if total == 0:
        raise ValueError("lift and capture are undefined without positives in y")
    prevalence = total / y.size
    captured = 0
    table = []
    for decile, rows in enumerate(np.array_split(_ranked(p), DECILES), start=1):
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
