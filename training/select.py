"""Choosing what to serve on inner origins, the same way for every dataset.

The backtest (training/backtest.py) and the per-origin models of the quality
benchmark (training/origin_model.py) both score several candidates out of time and
keep one by the same rule (`pick`):

- LightGBM with the parameter candidates, LightGBM with monotone constraints on the
  target's recency features (`monotone_constraints`), LightGBM with recent cutoffs
  weighted more (`cutoff_weights`);
- an out-of-fold stacked blend (`oof_stack`): a logistic fit on the logits of the
  LightGBM model and of the baselines, cross-fitted over customers so the blend is
  scored on rows its weights never saw;
- the baselines themselves.

`pick`: among the candidates whose AUC is at least every baseline's, the lowest log
loss; when none is (a baseline no candidate can serve ranks best), the highest AUC.
A servable baseline is a candidate, so the champion is never below it.

Calibration (`choose_calibration`): none, Platt or isotonic, cross-fitted over
customers on out-of-time predictions; a map is kept only when it lowers the log
loss below the raw one, and only with enough positives to fit it
(`MIN_POSITIVES`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from features.columns import CHURN
from model.blend import Linear
from model.calibration import Calibrator, logit
from training import calibrate
from training.baselines import RECENCY_FEATURE, LogisticBaseline
from training.calibrate import MIN_POSITIVES, NONE
from training.metrics import metrics

FOLDS = 5
WEIGHTINGS = ("equal", "recent")
METHODS = ("platt", "isotonic")
RECENT_FEATURES = ("days_since_last_event",)


def folds_of(customers: np.ndarray | pd.Series, folds: int = FOLDS) -> np.ndarray:
    """A fixed fold per customer (a hash of the id), for cross-fitting."""
    ids = pd.Series(customers).astype(str)
    return np.fromiter(
        (zlib.crc32(c.encode()) % folds for c in ids), np.int64, len(ids)
    )


def monotone_constraints(features: list[str], target: str) -> list[int]:
    """+1 (churn) or -1 (purchase, service request) on the target's own recency
    feature and days since the last event: the longer since the last event, the
    likelier churn and the less likely another event; 0 elsewhere."""
    sign = 1 if target == CHURN else -1
    recency = {RECENCY_FEATURE.get(target), *RECENT_FEATURES}
    return [sign if f in recency else 0 for f in features]


def cutoff_weights(
    cutoffs: pd.Series, scheme: str, half_life_days: int
) -> np.ndarray | None:
    """Row weights by cutoff: `equal` (None: every row counts once) or `recent`
    (halved every `half_life_days` before the latest cutoff)."""
    if scheme == "equal":
        return None
    if scheme != "recent":
        raise ValueError(
            f"cutoff weighting must be one of {WEIGHTINGS}, got {scheme!r}"
        )
    stamps = pd.to_datetime(pd.Series(cutoffs))
    age = (stamps.max() - stamps).dt.days.to_numpy(dtype=np.float64)
    return 0.5 ** (age / max(half_life_days, 1))


def stack_inputs(columns: list[np.ndarray]) -> np.ndarray:
    return np.column_stack([logit(np.asarray(c, dtype=np.float64)) for c in columns])


@dataclass(frozen=True)
class Stacker:
    """The blend's weights on the logits of its inputs, and its intercept."""

    coef: list[float]
    intercept: float

    def apply(self, columns: list[np.ndarray]) -> np.ndarray:
        z = stack_inputs(columns) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def fit_stacker(columns: list[np.ndarray], y: np.ndarray) -> Stacker:
    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(stack_inputs(columns), np.asarray(y, dtype=np.int64))
    return Stacker([float(v) for v in lr.coef_[0]], float(lr.intercept_[0]))


def oof_stack(
    columns: list[np.ndarray], y: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """The blend's out-of-fold predictions: each group scored by weights fitted on
    the other groups (a group holding one class only borrows every row's fit)."""
    out = np.empty(len(y))
    full = fit_stacker(columns, y)
    for g in np.unique(groups):
        held = groups == g
        rest = ~held
        stacker = (
            fit_stacker([c[rest] for c in columns], y[rest])
            if len(np.unique(y[rest])) == 2
            else full
        )
        out[held] = stacker.apply([c[held] for c in columns])
    return out


def _loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))


@dataclass(frozen=True)
class CalibrationChoice:
    method: str
    # cross-fitted log loss per method tried (none: the raw predictions)
    log_loss: dict[str, float]
    positives: int


def choose_calibration(
    p: np.ndarray, y: np.ndarray, groups: np.ndarray, methods=("platt", "isotonic")
) -> CalibrationChoice:
    """None, or the method whose cross-fitted log loss is lowest and below the raw
    log loss; methods without `MIN_POSITIVES` positives are not tried."""
    y = np.asarray(y, dtype=np.int64)
    positives = int(y.sum())
    losses = {NONE: _loss(y, p)}
    for method in methods:
        if positives < MIN_POSITIVES[method]:
            continue
        out = np.empty(len(y))
        for g in np.unique(groups):
            held = groups == g
            rest = ~held
            if len(np.unique(y[rest])) < 2:
                out[held] = p[held]
                continue
            out[held] = calibrate.fit(method, p[rest], y[rest]).apply(p[held])
        losses[method] = _loss(y, out)
    best = min(losses, key=lambda m: (losses[m], m != NONE))
    return CalibrationChoice(best, losses, positives)


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    return Calibrator() if method == NONE else calibrate.fit(method, p, y)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC and log loss; NaN for a baseline that gave no prediction."""
    if not np.isfinite(p).all():
        return {"auc": np.nan, "logloss": np.nan}
    m = metrics(np.asarray(y), np.asarray(p))
    return {"auc": m["roc_auc"], "logloss": m["log_loss"]}


def mean_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean AUC and log loss over origins, from (y, p) per origin."""
    each = [scores(y, p) for y, p in pairs]
    return {k: float(np.mean([e[k] for e in each])) for k in ("auc", "logloss")}


def pick(
    candidates: dict[str, dict[str, float]], baselines: dict[str, dict[str, float]]
) -> tuple[str, str]:
    """The candidate to serve (name -> mean `auc` and `logloss` over the inner
    origins), and why: the lowest log loss among those whose AUC reaches every
    baseline's (a servable baseline is among the candidates too); when none
    does, the highest AUC."""
    finite = {
        n: f
        for n, f in candidates.items()
        if np.isfinite(f["auc"]) and np.isfinite(f["logloss"])
    }
    bar = max(
        (f["auc"] for f in baselines.values() if np.isfinite(f["auc"])),
        default=-np.inf,
    )
    eligible = [n for n, f in finite.items() if f["auc"] >= bar]
    if eligible:
        best = min(eligible, key=lambda n: finite[n]["logloss"])
        return best, (
            f"lowest log loss {finite[best]['logloss']:.4f} among the candidates "
            f"whose AUC reaches the best baseline's {bar:.4f}"
        )
    best = max(finite, key=lambda n: finite[n]["auc"])
    return (
        best,
        f"highest AUC {finite[best]['auc']:.4f} (no candidate reaches {bar:.4f})",
    )


def linear_of(baseline: LogisticBaseline) -> Linear:
    """The fitted `LogisticBaseline` pipeline as numpy arrays (model.blend.Linear)."""
    columns = baseline.model.named_steps["columns"]
    lr = baseline.model.named_steps["logreg"]
    numeric = columns.named_transformers_["numeric"]
    categorical = columns.named_transformers_["categorical"]
    imputer = numeric.named_steps["simpleimputer"]
    scaler = numeric.named_steps["standardscaler"]
    num_idx = list(columns.transformers_[0][2])
    cat_idx = (
        list(columns.transformers_[1][2]) if len(columns.transformers_) > 1 else []
    )
    medians = np.nan_to_num(imputer.statistics_, nan=0.0)
    indicators = (
        [int(i) for i in imputer.indicator_.features_]
        if imputer.indicator_ is not None
        else []
    )
    onehot = categorical.named_steps["onehotencoder"] if cat_idx else None
    return Linear(
        numeric=[int(i) for i in num_idx],
        medians=[float(v) for v in medians],
        indicators=indicators,
        means=[float(v) for v in scaler.mean_],
        scales=[float(v) for v in scaler.scale_],
        categorical=[int(i) for i in cat_idx],
        categories=[[float(v) for v in c] for c in onehot.categories_]
        if onehot is not None
        else [],
        coef=[float(v) for v in lr.coef_[0]],
        intercept=float(lr.intercept_[0]),
    )
