"""Rolling-origin backtest, calibration and the final fit for one target.

For a target with horizon H, a cutoff is *complete* when its whole label window
lies in the data. The backtest's origins are the latest `origins` complete
cutoffs whose rows hold both classes (training.plan says which, and which cutoffs
were dropped and why). For each origin o:

- training cutoffs are those whose label windows end by o (c + H <= o), so no
  training label sees past the origin;
- the latest of them is the early-stopping cutoff; the trees are fitted on the
  ones whose windows end by it (the trees never see the rows they stop on);
- the model and every baseline are fitted on exactly those rows and scored on the
  origin's rows: like for like.

Calibration is fitted on the origins' out-of-time predictions (rows the trees
never saw). The method (isotonic or Platt) is the one with the lower log loss on
the last origin when fitted on the earlier ones; calibrated metrics per origin use
a calibrator fitted on the origins before it only.

The final model is fitted on every complete cutoff, for the median number of
rounds the origins' early stopping found, and served through the calibrator
fitted on all origins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import lightgbm as lgb
import numpy as np
import pandas as pd

from core.config import BacktestConfig, LightGBMConfig
from features.columns import CUSTOMER_ID, CUTOFF, PURCHASE
from features.labels import LabelSpec
from model.calibration import Calibrator
from model.encoding import Encoding
from training import calibrate
from training.baselines import LogisticBaseline, RecencyBaseline, bgnbd_baseline
from training.calibrate import Choice, choose
from training.dataset import TrainingTable
from training.metrics import metrics
from training.model import fit
from training.plan import Counts, Fold, Plan, class_counts, plan_target

log = logging.getLogger(__name__)

MODEL = "lightgbm"
CALIBRATED = "calibrated"


def _day(d: datetime) -> str:
    return d.strftime("%Y-%m-%d")


class TargetSkipped(ValueError):
    """A listed target that cannot be trained on these data (training.plan's
    `problem`: too few origins with both classes, single-class fitting or
    early-stopping rows, too few complete cutoffs). `counts` are the rows and
    positives of its population per cutoff; the message names the dropped
    cutoffs and the counts."""

    def __init__(
        self,
        target: str,
        reason: str,
        counts: dict[datetime, Counts],
        dropped: list[str] | None = None,
    ) -> None:
        self.target, self.reason, self.counts = target, reason, counts
        self.dropped = dropped or []
        per_cutoff = ", ".join(
            f"{_day(c)} {n.rows} rows/{n.positives} positive" for c, n in counts.items()
        )
        super().__init__(
            "\n".join([f"{reason}; per cutoff: {per_cutoff}", *self.dropped])
        )


def plan(table: TrainingTable, target: str, labels: LabelSpec, origins: int) -> Plan:
    """The folds of the backtest on `table`'s rows of the target's population
    (training.plan: which cutoffs are origins, which were dropped and why);
    `TargetSkipped`, naming the dropped cutoffs and the counts, when the data
    cannot give them."""
    target_plan = plan_target(
        target,
        table.cutoffs,
        table.data_end,
        labels,
        origins,
        class_counts(table.frame, target, table.cutoffs),
    )
    if target_plan.problem is not None:
        raise TargetSkipped(
            target,
            target_plan.problem,
            target_plan.counts,
            target_plan.dropped_lines(),
        )
    return target_plan


@dataclass
class OriginResult:
    origin: datetime
    customers: np.ndarray
    y: np.ndarray
    predictions: dict[str, np.ndarray]
    best_iteration: int
    train_cutoffs: list[datetime]

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def positives(self) -> int:
        return int(self.y.sum())


@dataclass
class Backtest:
    target: str
    origins: list[OriginResult]
    calibration: Choice
    calibrator: Calibrator
    # per origin and model: metrics; "calibrated" from the second origin on
    metrics: list[dict[str, dict[str, float]]] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(self.origins[0].predictions)

    def summary(self, model: str, skip_first: bool = False) -> dict[str, float]:
        """Mean and std per metric over the origins (from the second on)."""
        rows = [m[model] for m in self.metrics[int(skip_first) :] if model in m]
        out = {}
        for key in rows[0]:
            values = np.array([r[key] for r in rows], dtype=float)
            out[f"{key}_mean"] = float(np.nanmean(values))
            out[f"{key}_std"] = float(np.nanstd(values))
        return out

    def evidence(self) -> list[dict]:
        """Per origin: rows, positives and the model's log loss and AUC, kept with
        the model so a later challenger can be compared on the same origins."""
        return [
            {
                "origin": _day(o.origin),
                "n": o.n,
                "positives": o.positives,
                "log_loss": m[MODEL]["log_loss"],
                "roc_auc": m[MODEL]["roc_auc"],
            }
            for o, m in zip(self.origins, self.metrics, strict=True)
        ]

    def rows(self) -> list[dict]:
        """Long form: one row per origin and model, for logging and plots."""
        return [
            {"origin": _day(o.origin), "model": name, **values}
            for o, m in zip(self.origins, self.metrics, strict=True)
            for name, values in m.items()
        ]


def _rows(frame: pd.DataFrame, cutoffs: list[datetime]) -> pd.DataFrame:
    return frame[frame[CUTOFF].isin(cutoffs)]


@dataclass(frozen=True)
class FoldData:
    """One fold's rows and matrices, encoded once: the trees fit on `x_fit`,
    early-stop on `x_stop` and are scored on `x_origin`; the baselines fit on
    `train_rows` (fitting and early-stopping rows together)."""

    fold: Fold
    encoding: Encoding
    train_rows: pd.DataFrame
    origin_rows: pd.DataFrame
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_stop: np.ndarray
    y_stop: np.ndarray
    x_origin: np.ndarray
    y_origin: np.ndarray


def fold_data(table: TrainingTable, fold: Fold, target: str) -> FoldData:
    """The fold's rows, with the encoding fitted on its training rows."""
    fit_rows = _rows(table.frame, fold.fit_cutoffs)
    stop_rows = _rows(table.frame, [fold.stop_cutoff])
    train_rows = _rows(table.frame, fold.train_cutoffs)
    origin_rows = _rows(table.frame, [fold.origin])
    encoding = Encoding.fit(
        train_rows, table.catalogue.names, table.catalogue.categorical
    )
    return FoldData(
        fold,
        encoding,
        train_rows,
        origin_rows,
        encoding.to_matrix(fit_rows),
        fit_rows[target].to_numpy(),
        encoding.to_matrix(stop_rows),
        stop_rows[target].to_numpy(),
        encoding.to_matrix(origin_rows),
        origin_rows[target].to_numpy().astype(np.int64),
    )


def fit_fold(data: FoldData, lgb_config: LightGBMConfig) -> lgb.Booster:
    """The fold's trees: fitted on its fitting rows, early-stopped on its
    early-stopping rows."""
    return fit(
        data.x_fit,
        data.y_fit,
        data.encoding,
        lgb_config,
        valid=(data.x_stop, data.y_stop),
    )


def run(
    table: TrainingTable,
    plan: Plan,
    lgb_config: LightGBMConfig,
    config: BacktestConfig,
    purchases: pd.DataFrame | None = None,
    role_of: dict[str, str] | None = None,
) -> Backtest:
    """Fit and score the model and its baselines at every origin, then choose and
    fit the calibrator."""
    target = plan.target
    results = []
    for fold in plan.folds:
        data = fold_data(table, fold, target)
        booster = fit_fold(data, lgb_config)
        encoding, x_origin, y_origin = data.encoding, data.x_origin, data.y_origin
        train_rows, origin_rows = data.train_rows, data.origin_rows
        del data  # frees the trees' matrices before the baselines build theirs
        y_train = train_rows[target].to_numpy()
        predictions = {
            MODEL: booster.predict(x_origin),
            "recency": RecencyBaseline(target)
            .fit(train_rows, y_train)
            .predict(origin_rows),
            "logreg": LogisticBaseline(encoding, config.baseline_max_rows)
            .fit(encoding.to_matrix(train_rows), y_train)
            .predict(x_origin),
        }
        if target == PURCHASE and purchases is not None:
            predictions["bgnbd"] = bgnbd_baseline(
                purchases,
                origin_rows,
                train_rows,
                y_train,
                fold.origin,
                plan.horizon_days,
                role_of or {},
            )
        results.append(
            OriginResult(
                fold.origin,
                origin_rows[CUSTOMER_ID].to_numpy(),
                y_origin,
                predictions,
                max(booster.best_iteration, 1),
                fold.train_cutoffs,
            )
        )
        log.info(
            "%s origin %s: %d rows, best iteration %d",
            target,
            _day(fold.origin),
            len(origin_rows),
            booster.best_iteration,
        )
    return _calibrate(target, results, config.calibration)


def _pooled(results: list[OriginResult]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([r.predictions[MODEL] for r in results]),
        np.concatenate([r.y for r in results]),
    )


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Metrics, or NaNs for a baseline that gave no prediction (e.g. BG/NBD that
    did not converge)."""
    if not np.isfinite(p).all():
        return dict.fromkeys(metrics(y, np.full(len(y), y.mean())), float("nan"))
    return metrics(y, p)


def _calibrate(target: str, results: list[OriginResult], method: str) -> Backtest:
    choice = choose(_pooled(results[:-1]), _pooled(results[-1:]), method)
    per_origin = []
    for k, r in enumerate(results):
        scores = {name: _metrics(r.y, p) for name, p in r.predictions.items()}
        if k > 0:
            rolling = calibrate.fit(choice.method, *_pooled(results[:k]))
            r.predictions[CALIBRATED] = rolling.apply(r.predictions[MODEL])
            scores[CALIBRATED] = _metrics(r.y, r.predictions[CALIBRATED])
        per_origin.append(scores)
    calibrator = calibrate.fit(choice.method, *_pooled(results))
    log.info(
        "%s calibration: %s (log loss on the last origin %s)",
        target,
        choice.method,
        {k: round(v, 5) for k, v in choice.log_loss.items()},
    )
    return Backtest(target, results, choice, calibrator, per_origin)


def fit_final(
    table: TrainingTable,
    plan: Plan,
    backtest: Backtest,
    lgb_config: LightGBMConfig,
) -> tuple[lgb.Booster, Encoding, pd.DataFrame]:
    """The served model: every complete cutoff, the backtest's median rounds."""
    rows = _rows(table.frame, plan.final_cutoffs)
    encoding = Encoding.fit(rows, table.catalogue.names, table.catalogue.categorical)
    rounds = int(np.median([r.best_iteration for r in backtest.origins]))
    booster = fit(
        encoding.to_matrix(rows),
        rows[plan.target].to_numpy(),
        encoding,
        lgb_config,
        rounds=rounds,
    )
    return booster, encoding, rows
