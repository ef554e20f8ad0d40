"""Metrics of scores against realised labels (numpy and scipy only: the serving
runtime carries no scikit-learn; the unit tests check them against it).

ROC AUC by ranks (Mann-Whitney, ties averaged), log loss with probabilities
clipped to [1e-15, 1 - 1e-15], the reliability curve over `BINS` equal-count bins
(rows ranked by score, cut into bins whose sizes differ by at most one) and the
expected calibration error over those bins, and the top decile's lift (the
highest-scored tenth by rank, its positive rate over the overall rate).

ECE has a floor from sampling alone: even perfectly calibrated scores leave each
bin's observed rate off its mean score by about sqrt(2 / pi) * sd, sd =
sqrt(sum p (1 - p)) / n per bin. `ece_noise_floor` is that expectation: about 0.04
for 1,000 customers at rates near one half, 0.004 for 100,000. An ECE near its
floor is noise, not miscalibration.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

BINS = 10
EPS = 1e-15


def roc_auc(y: ArrayLike, p: ArrayLike) -> float | None:
    """The probability that a positive outranks a negative (ties count half);
    None with a single class."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(p)
    return float(
        (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def reliability(y: ArrayLike, p: ArrayLike, bins: int = BINS) -> list[dict]:
    """Per equal-count bin of p (lowest scores first): n, mean predicted, observed
    rate. Fewer rows than bins: one bin per row."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    return [
        {
            "bin": i,
            "n": int(rows.size),
            "mean_predicted": float(p[rows].mean()),
            "observed": float(y[rows].mean()),
        }
        for i, rows in enumerate(np.array_split(order, min(bins, p.size)), start=1)
        if rows.size
    ]


def ece(curve: list[dict]) -> float:
    """The reliability curve's gaps |mean predicted - observed|, weighted by n."""
    n = sum(b["n"] for b in curve)
    gaps = sum(b["n"] * abs(b["mean_predicted"] - b["observed"]) for b in curve)
    return float(gaps / n) if n else float("nan")


def ece_noise_floor(p: ArrayLike, bins: int = BINS) -> float:
    """The ECE expected of perfectly calibrated scores `p` in these bins."""
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for rows in np.array_split(order, min(bins, p.size)):
        if rows.size:
            sd = np.sqrt((p[rows] * (1 - p[rows])).sum()) / rows.size
            total += rows.size * np.sqrt(2 / np.pi) * sd
    return float(total / p.size)


def top_decile_lift(y: ArrayLike, p: ArrayLike) -> float | None:
    """Positive rate of the highest-scored tenth (by rank, ties in input order)
    over the overall rate; None without positives or with fewer than 10 rows."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.size < BINS or y.sum() == 0:
        return None
    top = np.array_split(np.argsort(-p, kind="stable"), BINS)[0]
    return float(y[top].mean() / y.mean())


def realised(y: ArrayLike, p: ArrayLike) -> dict:
    """Every figure for one target on one score date (`y` 0/1, `p` the scores)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.size == 0:
        return {"n": 0, "positives": 0}
    curve = reliability(y, p)
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()),
        "mean_score": float(p.mean()),
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": ece(curve),
        "ece_noise_floor": ece_noise_floor(p),
        "lift_top_decile": top_decile_lift(y, p),
        "reliability": curve,
    }
