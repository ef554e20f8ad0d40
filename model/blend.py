"""A stacked blend of the LightGBM model with a logistic regression, numpy only.

Training (training/select.py) may serve, instead of the trees alone, a logistic
stack of the trees' margin and a logistic regression's margin on the same feature
matrix: p = sigmoid(a * lgb_margin + b * logreg_margin + c), with the weights fitted
on the backtest's out-of-time predictions. The logistic regression is the
`training.baselines.LogisticBaseline` pipeline (signed log1p, median imputation
with missing indicators, standard scaling; categorical codes one-hot), exported as
plain arrays so the API and the nightly job apply it without scikit-learn. With
a = 0 and b = 1, c = 0 the blend is the logistic regression alone (when the
backtest chose the baseline itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class Linear:
    """The logistic regression's margin on an encoded matrix."""

    numeric: list[int]
    medians: list[float]
    # positions (within `numeric`) that get a missing indicator
    indicators: list[int]
    means: list[float]
    scales: list[float]
    categorical: list[int]
    categories: list[list[float]]
    coef: list[float]
    intercept: float

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        x = np.asarray(matrix, dtype=np.float64)
        num = _signed_log1p(x[:, self.numeric])
        missing = np.isnan(num)
        num = np.where(missing, np.asarray(self.medians), num)
        parts = [num, missing[:, self.indicators].astype(np.float64)]
        z = (np.hstack(parts) - np.asarray(self.means)) / np.asarray(self.scales)
        blocks = [z]
        for column, values in zip(self.categorical, self.categories, strict=True):
            codes = np.nan_to_num(x[:, column], nan=-1.0)
            blocks.append((codes[:, None] == np.asarray(values)[None, :]) * 1.0)
        # an elementwise product summed along each row, row-major (neither a BLAS
        # product nor a column-major sum, whose rounding depends on how many rows
        # share the call): a customer's margin is the same bits alone (the API)
        # or among a million (the nightly job)
        terms = np.ascontiguousarray(np.hstack(blocks) * np.asarray(self.coef))
        return terms.sum(axis=1) + self.intercept

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Blend:
    """sigmoid(lightgbm * trees' margin + logreg * linear margin + intercept)."""

    lightgbm: float
    logreg: float
    intercept: float
    linear: Linear

    def apply(self, lgb_margin: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        z = self.lightgbm * np.asarray(lgb_margin, dtype=np.float64)
        z = z + self.logreg * self.linear.margin(matrix) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {
            "lightgbm": self.lightgbm,
            "logreg": self.logreg,
            "intercept": self.intercept,
            "linear": self.linear.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> Blend | None:
        if not data:
            return None
        return cls(
            float(data["lightgbm"]),
            float(data["logreg"]),
            float(data["intercept"]),
            Linear(**data["linear"]),
        )


# below this many rows one OpenMP thread predicts: a parallel region wakes the
# pool's other threads and waits for them at its end, which costs more than a
# few rows' trees (1 row: 0.027 against 0.065 ms at the p50, 0.086 against
# 0.228 ms at the p99; equal at 16 rows, with OMP_WAIT_POLICY=passive as
# served) and, on busy cores, waits for a thread the scheduler has not run yet
ONE_THREAD_ROWS = 16


def served_raw(
    booster, blend: Blend | None, matrix: np.ndarray, threads: int = 0
) -> np.ndarray:
    """The served model's probability before calibration: the trees' own, or the
    blend of their margin with the logistic regression's. `threads` > 0 caps
    LightGBM's OpenMP threads for this predict (a Spark task owns one core);
    each row's figure does not depend on it. Unset, a matrix of fewer than
    `ONE_THREAD_ROWS` rows (an API request's) is predicted on one thread."""
    if threads <= 0 and len(matrix) < ONE_THREAD_ROWS:
        threads = 1
    kwargs = {"num_threads": threads} if threads > 0 else {}
    if blend is None:
        return booster.predict(matrix, **kwargs)
    return blend.apply(booster.predict(matrix, raw_score=True, **kwargs), matrix)


def blend_raw(blend: Blend | None, trees: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The blend applied to the trees' probabilities `trees` (as a Spark UDF gives
    them) rather than their margins."""
    if blend is None:
        return trees
    p = np.clip(np.asarray(trees, dtype=np.float64), 1e-15, 1 - 1e-15)
    return blend.apply(np.log(p / (1 - p)), matrix)
