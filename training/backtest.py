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

What is served is chosen on these origins (training/select.py, the rule the
quality benchmark applies too): LightGBM as configured, with monotone constraints
on the target's recency features, and with recent cutoffs weighted more; an
out-of-fold stacked blend of the best of them with the logistic regression (the
blend's weights at each origin fitted on the other origins' out-of-time
predictions); and the logistic regression itself. `select.pick` keeps the lowest
mean log loss among the candidates whose mean AUC reaches every baseline's, so the
champion is never below a baseline in its own backtest. `MODEL`'s predictions are
the chosen candidate's.

Calibration is fitted on the origins' out-of-time predictions (rows the trees
never saw). The method (none, isotonic or Platt) is the one with the lowest log
loss on the last origin when fitted on the earlier ones (none when the earlier
origins hold too few positives for a map, or when no map beats the raw log loss);
calibrated metrics per origin use a calibrator fitted on the origins before it.

The final model is fitted on every complete cutoff, for the median number of
rounds the origins' early stopping found, and served through the calibrator
fitted on all origins (and through the blend, model.blend, when chosen).
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
from model.blend import Blend
from model.calibration import Calibrator
from model.encoding import Encoding
from training import calibrate, select
from training.baselines import LogisticBaseline, RecencyBaseline, bgnbd_baseline
from training.calibrate import Choice, choose
from training.dataset import TrainingTable
from training.metrics import metrics
from training.model import fit
from training.plan import Counts, Fold, Plan, class_counts, plan_target

log = logging.getLogger(__name__)

MODEL = "lightgbm"
CALIBRATED = "calibrated"
# the candidates the backtest chooses among (training/select.py)
MONOTONE, RECENT, BLEND, LOGREG = (
    "lightgbm_monotone",
    "lightgbm_recent",
    "blend",
    "logreg",
)
TREES = {MODEL: {}, MONOTONE: {"monotone": True}, RECENT: {"weighting": "recent"}}
BASELINES = ("recency", LOGREG, "bgnbd")


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
    # every candidate's predictions (training/select.py); MODEL's are the chosen's
    candidates: dict[str, np.ndarray] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)

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
    selection: Selection | None = None

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

    def margin(self, samples: int, confidence: float) -> dict[str, float | str]:
        """The served model's margin over the best baseline (the highest mean AUC
        over the origins): AUC and log loss, with the AUC's paired bootstrap
        interval, customers resampled within each origin (training.bootstrap)."""
        from training.bootstrap import CUSTOMER, LABEL, ORIGIN, paired

        usable = [
            b
            for b in BASELINES
            if all(
                b in o.predictions and np.isfinite(o.predictions[b]).all()
                for o in self.origins
            )
        ]
        if not usable:
            return {}
        auc = {b: self.summary(b)["roc_auc_mean"] for b in usable}
        best = max(auc, key=auc.__getitem__)
        joined = pd.concat(
            pd.DataFrame(
                {
                    CUSTOMER: o.customers,
                    ORIGIN: _day(o.origin),
                    LABEL: o.y,
                    "model": o.predictions[MODEL],
                    "baseline": o.predictions[best],
                }
            )
            for o in self.origins
        )
        result = paired(
            joined, "model", "baseline", samples=samples, confidence=confidence
        )
        return {
            "margin_baseline": best,
            "margin_roc_auc": result.auc_loss.point,
            "margin_roc_auc_ci_low": result.auc_loss.low,
            "margin_roc_auc_ci_high": result.auc_loss.high,
            "margin_log_loss": -result.log_loss_gain.point,
            "margin_log_loss_ci_low": -result.log_loss_gain.high,
            "margin_log_loss_ci_high": -result.log_loss_gain.low,
        }

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
    # the fitting rows' cutoffs (for cutoff weighting)
    fit_cutoffs: pd.Series | None = None


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
        fit_rows[CUTOFF],
    )


def _variant(
    name: str, encoding: Encoding, target: str, cutoffs, horizon_days: int
) -> dict:
    """fit()'s monotone constraints and row weights for a `TREES` variant."""
    options = TREES[name]
    monotone = (
        select.monotone_constraints(list(encoding.features), target)
        if options.get("monotone")
        else None
    )
    weight = (
        select.cutoff_weights(cutoffs, options["weighting"], horizon_days)
        if "weighting" in options and cutoffs is not None
        else None
    )
    return {"monotone": monotone, "weight": weight}


def fit_fold(
    data: FoldData,
    lgb_config: LightGBMConfig,
    variant: str = MODEL,
    target: str = "",
    horizon_days: int = 0,
) -> lgb.Booster:
    """The fold's trees (a `TREES` variant): fitted on its fitting rows,
    early-stopped on its early-stopping rows."""
    options = _variant(variant, data.encoding, target, data.fit_cutoffs, horizon_days)
    return fit(
        data.x_fit,
        data.y_fit,
        data.encoding,
        lgb_config,
        valid=(data.x_stop, data.y_stop),
        **options,
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
        boosters = {
            name: fit_fold(data, lgb_config, name, target, plan.horizon_days)
            for name in _trees(config)
        }
        encoding, x_origin, y_origin = data.encoding, data.x_origin, data.y_origin
        train_rows, origin_rows = data.train_rows, data.origin_rows
        del data  # frees the trees' matrices before the baselines build theirs
        y_train = train_rows[target].to_numpy()
        candidates = {name: b.predict(x_origin) for name, b in boosters.items()}
        candidates[LOGREG] = (
            LogisticBaseline(encoding, config.baseline_max_rows)
            .fit(encoding.to_matrix(train_rows), y_train)
            .predict(x_origin)
        )
        booster = boosters[MODEL]
        predictions = {
            MODEL: candidates[MODEL],
            "recency": RecencyBaseline(target)
            .fit(train_rows, y_train)
            .predict(origin_rows),
            "logreg": candidates[LOGREG],
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
                candidates,
                {n: max(b.best_iteration, 1) for n, b in boosters.items()},
            )
        )
        log.info(
            "%s origin %s: %d rows, best iteration %d",
            target,
            _day(fold.origin),
            len(origin_rows),
            booster.best_iteration,
        )
    selection = choose_served(results, config.serve == "auto")
    log.info("%s: serving %s (%s)", target, selection.chosen, selection.reason)
    backtest = _calibrate(target, results, config.calibration)
    backtest.selection = selection
    return backtest


@dataclass(frozen=True)
class Selection:
    """What the backtest chose to serve and the figures that chose it (mean AUC
    and log loss over the origins per candidate and baseline)."""

    chosen: str
    reason: str
    figures: dict[str, dict[str, float]]
    # the LightGBM variant served (alone, or as the blend's trees)
    trees: str
    # the blend's weights on (trees, logistic regression), fitted on every origin
    stacker: select.Stacker | None

    def params(self) -> dict[str, object]:
        """What the model card states: the choice and the figures behind it."""
        out: dict[str, object] = {
            "selection.chosen": self.chosen,
            "selection.trees": self.trees,
            "selection.reason": self.reason,
        }
        if self.stacker is not None:
            out["selection.blend_coef"] = ",".join(
                f"{c:.4f}" for c in self.stacker.coef
            )
        return out

    def metrics(self) -> dict[str, float]:
        return {
            f"selection_{name}_{k}": v
            for name, values in self.figures.items()
            for k, v in values.items()
            if np.isfinite(v)
        }


def _trees(config: BacktestConfig) -> list[str]:
    """The LightGBM candidates: as configured, and the configured variants."""
    variants = {"monotone": MONOTONE, "recent": RECENT}
    if config.serve == "lightgbm":
        return [MODEL]
    return [MODEL, *(variants[v] for v in config.tree_variants)]


def choose_served(results: list[OriginResult], choose: bool = True) -> Selection:
    """Score every candidate over the origins, add the out-of-fold blend of the
    best trees with the logistic regression (at each origin, weights fitted on
    the other origins' predictions) and keep one by `select.pick`; `MODEL`'s
    predictions and rounds become the chosen's."""

    def mean(name: str, where: str = "candidates") -> dict[str, float]:
        return select.mean_scores([(r.y, getattr(r, where)[name]) for r in results])

    fitted = [n for n in TREES if n in results[0].candidates]
    trees = min(fitted, key=lambda name: mean(name)["logloss"])
    inputs = (trees, LOGREG)
    for k, r in enumerate(results):
        others = [o for j, o in enumerate(results) if j != k]
        stacker = select.fit_stacker(
            [np.concatenate([o.candidates[n] for o in others]) for n in inputs],
            np.concatenate([o.y for o in others]),
        )
        r.candidates[BLEND] = stacker.apply([r.candidates[n] for n in inputs])
    figures = {name: mean(name) for name in [*fitted, BLEND, LOGREG]}
    baselines = {
        name: mean(name, "predictions")
        for name in BASELINES
        if all(name in r.predictions for r in results)
    }
    figures |= {f"baseline_{n}": v for n, v in baselines.items()}
    chosen, reason = (
        select.pick({n: figures[n] for n in (trees, BLEND, LOGREG)}, baselines)
        if choose
        else (MODEL, "configured: training.backtest.serve = lightgbm")
    )
    for r in results:
        r.predictions[MODEL] = r.candidates[chosen]
        r.best_iteration = r.rounds[trees]
    stacker = None
    if chosen in (BLEND, LOGREG):
        stacker = (
            select.fit_stacker(
                [np.concatenate([r.candidates[n] for r in results]) for n in inputs],
                np.concatenate([r.y for r in results]),
            )
            if chosen == BLEND
            else select.Stacker([0.0, 1.0], 0.0)
        )
    return Selection(chosen, reason, figures, trees, stacker)


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
    """The served trees: every complete cutoff, the backtest's median rounds, the
    chosen variant's constraints and weights."""
    rows = _rows(table.frame, plan.final_cutoffs)
    encoding = Encoding.fit(rows, table.catalogue.names, table.catalogue.categorical)
    rounds = int(np.median([r.best_iteration for r in backtest.origins]))
    trees = backtest.selection.trees if backtest.selection else MODEL
    options = _variant(trees, encoding, plan.target, rows[CUTOFF], plan.horizon_days)
    booster = fit(
        encoding.to_matrix(rows),
        rows[plan.target].to_numpy(),
        encoding,
        lgb_config,
        rounds=rounds,
        **options,
    )
    return booster, encoding, rows


def final_blend(
    backtest: Backtest,
    encoding: Encoding,
    rows: pd.DataFrame,
    target: str,
    config: BacktestConfig,
) -> Blend | None:
    """The served blend (model.blend) when the backtest chose the blend or the
    logistic regression: the regression refitted on the final rows, the weights
    fitted on the origins; None when the trees alone are served."""
    selection = backtest.selection
    if selection is None or selection.stacker is None:
        return None
    logreg = LogisticBaseline(encoding, config.baseline_max_rows).fit(
        encoding.to_matrix(rows), rows[target].to_numpy()
    )
    (a, b), c = selection.stacker.coef, selection.stacker.intercept
    return Blend(a, b, c, select.linear_of(logreg))
