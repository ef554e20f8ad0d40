"""A model for one out-of-time origin, with every choice made before it.

For an origin o and a horizon h, the training cutoffs are those whose label windows
end by o (c + h <= o). Then:

- early stopping on the rows of the customers held out by a fixed hash of the id
  (1 in `HOLDOUT_FOLDS`), and a refit on every training row for the rounds found,
  as `training.backtest.fit_final` refits. The backtest stops early on its latest
  cutoff and fits on cutoffs whose windows end by that one; when the data start
  too late for that (the first origins of a short log), stopping on held-out
  customers needs no earlier cutoff, and unlike stopping on a cutoff whose window
  overlaps the fitting rows' windows, it shares no label with them;
- the LightGBM parameters are chosen among `Candidate`s by log loss at an inner
  origin: the latest training cutoff, scored by models trained on the cutoffs
  whose windows end by it (the same gap as the origin's). The origin itself never
  takes part. Without such cutoffs the first candidate is used;
- the calibrator is fitted on the chosen candidate's predictions at that inner
  origin, as the backtest calibrates on its origins; without one it is the
  identity.

Used by the quality benchmark (serving/bench_quality.py).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd

from core.config import LightGBMConfig
from features.columns import CUSTOMER_ID, CUTOFF
from model.calibration import Calibrator
from model.encoding import Encoding
from training import calibrate
from training.dataset import TrainingTable
from training.metrics import metrics
from training.model import fit

HOLDOUT_FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    """A named set of LightGBM parameters."""

    name: str
    lightgbm: LightGBMConfig


def held_out(customers: pd.Series, folds: int = HOLDOUT_FOLDS) -> np.ndarray:
    """True for the customers (1 in `folds`, by a fixed hash of the id) whose rows
    early-stop the trees rather than fit them."""
    ids = customers.astype(str)
    return np.fromiter(
        (zlib.crc32(c.encode()) % folds == 0 for c in ids), bool, len(ids)
    )


@dataclass(frozen=True)
class Fitted:
    booster: lgb.Booster
    encoding: Encoding
    rounds: int

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.encoding.to_matrix(rows))


def fit_rows(
    rows: pd.DataFrame, target: str, table: TrainingTable, config: LightGBMConfig
) -> Fitted:
    """Early-stopped on the held-out customers, refitted on every row."""
    names, categorical = table.catalogue.names, table.catalogue.categorical
    encoding = Encoding.fit(rows, names, categorical)
    x, y = encoding.to_matrix(rows), rows[target].to_numpy()
    held = held_out(rows[CUSTOMER_ID])
    for part, name in ((~held, "fitting"), (held, "early-stopping")):
        if len(np.unique(y[part])) < 2:
            raise ValueError(f"{target}: the {name} rows hold a single class")
    stopped = fit(x[~held], y[~held], encoding, config, valid=(x[held], y[held]))
    rounds = max(stopped.best_iteration, 1)
    return Fitted(fit(x, y, encoding, config, rounds=rounds), encoding, rounds)


def rows_at(table: TrainingTable, cutoffs: Sequence[datetime]) -> pd.DataFrame:
    return table.frame[table.frame[CUTOFF].isin(list(cutoffs))]


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC and log loss; NaN for a baseline that gave no prediction."""
    if not np.isfinite(p).all():
        return {"auc": math.nan, "logloss": math.nan}
    m = metrics(np.asarray(y), np.asarray(p))
    return {"auc": m["roc_auc"], "logloss": m["log_loss"]}


@dataclass(frozen=True)
class Choice:
    """The candidate chosen at the inner origin, and the calibrator fitted there."""

    candidate: Candidate
    inner_origin: datetime | None
    inner: dict[str, dict[str, float]]
    calibrator: Calibrator


def choose(
    table: TrainingTable,
    target: str,
    horizon_days: int,
    train_cutoffs: list[datetime],
    candidates: Sequence[Candidate],
    calibration: str,
) -> Choice:
    """Each candidate trained on the cutoffs whose windows end by the latest
    training cutoff and scored there; the lowest log loss wins (ties: the
    earlier). Without such cutoffs: the first candidate, uncalibrated."""
    inner = train_cutoffs[-1]
    before = [c for c in train_cutoffs if c + timedelta(days=horizon_days) <= inner]
    at = rows_at(table, [inner])
    if not before or at[target].nunique() < 2:
        return Choice(candidates[0], None, {}, Calibrator())
    rows, y = rows_at(table, before), at[target].to_numpy()
    predicted = {
        c.name: fit_rows(rows, target, table, c.lightgbm).predict(at)
        for c in candidates
    }
    inner_scores = {name: scores(y, p) for name, p in predicted.items()}
    best = min(candidates, key=lambda c: inner_scores[c.name]["logloss"])
    calibrator = calibrate.fit(calibration, predicted[best.name], y)
    return Choice(best, inner, inner_scores, calibrator)


@dataclass(frozen=True)
class OriginModel:
    fitted: Fitted
    choice: Choice
    train_cutoffs: list[datetime]

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw and calibrated probabilities."""
        raw = self.fitted.predict(rows)
        return raw, self.choice.calibrator.apply(raw)


def model_for(
    table: TrainingTable,
    target: str,
    horizon_days: int,
    origin: datetime,
    candidates: Sequence[Candidate],
    calibration: str = "platt",
) -> OriginModel:
    """Choose, fit and calibrate the model for `origin` on the table's cutoffs
    whose label windows end by it."""
    train = [c for c in table.cutoffs if c + timedelta(days=horizon_days) <= origin]
    if not train:
        raise ValueError(
            f"{target}: no cutoff's {horizon_days}-day window ends by {origin:%Y-%m-%d}"
        )
    choice = choose(table, target, horizon_days, train, candidates, calibration)
    fitted = fit_rows(rows_at(table, train), target, table, choice.candidate.lightgbm)
    return OriginModel(fitted, choice, train)
