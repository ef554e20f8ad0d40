"""Uplift metrics on held-out customers of a randomised campaign: the Qini curve,
its coefficient and uplift at k (as scikit-uplift defines them).

Customers are ranked by a score, highest first; customers with equal scores
are one step of the curve (the curve is drawn only at distinct scores, so the
order of ties does not matter). After the top n customers, with n_t treated of
whom y_t had the outcome and n_c control of whom y_c had it:

    qini(n) = y_t - y_c * n_t / n_c        (0 * y_c when n_c = 0)

the outcomes the contacted top n gained over what their control predicts. The
curve is reported per customer of the population (x = n / N, y = qini(n) / N).
The Qini coefficient is the area between that curve and the straight line of
random targeting from (0, 0) to (1, qini(N) / N): positive when the ranking
finds the customers the campaign moves first; ~0 for a random ranking.

Uplift at k: treated outcome rate minus control outcome rate among the top
ceil(k * N) customers (NaN when either group is empty there).

`outcome` is the wanted outcome (1 = good): for churn pass 1 - churned, so
every figure reads "more is better".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AT_K = (0.1, 0.2, 0.3)


def _arrays(
    score: Sequence[float] | np.ndarray,
    outcome: Sequence[int] | np.ndarray,
    treated: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    t = np.asarray(treated, dtype=np.float64)
    if not (s.ndim == y.ndim == t.ndim == 1) or not len(s) == len(y) == len(t):
        raise ValueError(
            f"score, outcome, treated: one-dimensional and of equal length, got "
            f"{s.shape}, {y.shape}, {t.shape}"
        )
    if len(s) == 0:
        raise ValueError("score: no customers")
    if not np.all(np.isfinite(s)):
        raise ValueError("score: must be finite (no NaN)")
    if not np.all(np.isin(y, (0, 1))) or not np.all(np.isin(t, (0, 1))):
        raise ValueError("outcome, treated: 0 or 1")
    return s, y, t


def qini_curve(
    score: Sequence[float] | np.ndarray,
    outcome: Sequence[int] | np.ndarray,
    treated: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the Qini curve per customer, from (0, 0), one point per
    distinct score (see the module docstring)."""
    s, y, t = _arrays(score, outcome, treated)
    order = np.argsort(-s, kind="stable")
    s, y, t = s[order], y[order], t[order]
    # the last position of each run of equal scores
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    n_t = np.cumsum(t)[ends]
    y_t = np.cumsum(y * t)[ends]
    n_all = ends + 1.0
    n_c = n_all - n_t
    y_c = np.cumsum(y * (1 - t))[ends]
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    q = y_t - y_c * ratio
    n = float(len(s))
    return np.r_[0.0, n_all / n], np.r_[0.0, q / n]


def qini_coefficient(
    score: Sequence[float] | np.ndarray,
    outcome: Sequence[int] | np.ndarray,
    treated: Sequence[int] | np.ndarray,
) -> float:
    """Area between the Qini curve and random targeting's line (per customer)."""
    x, q = qini_curve(score, outcome, treated)
    area = float(np.sum((x[1:] - x[:-1]) * (q[1:] + q[:-1]) / 2))
    return area - float(q[-1]) / 2


def uplift_at(
    score: Sequence[float] | np.ndarray,
    outcome: Sequence[int] | np.ndarray,
    treated: Sequence[int] | np.ndarray,
    k: float,
) -> float:
    """Treated minus control outcome rate among the top ceil(k * N) by score."""
    if not 0 < k <= 1:
        raise ValueError(f"k: a share in (0, 1], got {k}")
    s, y, t = _arrays(score, outcome, treated)
    top = np.argsort(-s, kind="stable")[: math.ceil(k * len(s))]
    yt, tt = y[top], t[top]
    if tt.sum() == 0 or (1 - tt).sum() == 0:
        return math.nan
    return float(yt[tt == 1].mean() - yt[tt == 0].mean())


def summary(
    score: Sequence[float] | np.ndarray,
    outcome: Sequence[int] | np.ndarray,
    treated: Sequence[int] | np.ndarray,
    at: Sequence[float] = AT_K,
) -> dict[str, float]:
    """`qini` and `uplift_at_<pct>` of one ranking."""
    out = {"qini": qini_coefficient(score, outcome, treated)}
    for k in at:
        out[f"uplift_at_{round(k * 100)}"] = uplift_at(score, outcome, treated, k)
    return out


def mean_and_spread(per_split: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per figure its mean over the splits and `<figure>_std` (sample standard
    deviation; 0 for one split), NaN splits left out."""
    out: dict[str, float] = {}
    for key in per_split[0]:
        values = np.array([s[key] for s in per_split], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[key] = float(values.mean()) if len(values) else math.nan
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
