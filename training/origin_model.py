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
- what is served is chosen at an inner origin: the latest training cutoff, scored
  by models trained on the cutoffs whose windows end by it (the same gap as the
  origin's). The origin itself never takes part. The candidates
  (training/select.py, the rule the backtest uses too): LightGBM with each
  `Candidate`'s parameters, the best of them with monotone constraints on the
  recency features and with recent cutoffs weighted more, an out-of-fold stacked
  blend of the best LightGBM with the baselines (logistic regression, recency,
  BG/NBD where purchases are given), and the baselines themselves. Without such
  cutoffs the first candidate is used, raw;
- calibration (none, Platt or isotonic) is chosen by cross-fitted log loss over
  the customers at that inner origin, kept only when it beats the raw log loss
  and with enough positives, and fitted on the chosen model's predictions there.

Used by the quality benchmark (benchmarks/quality.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd

from core.config import LightGBMConfig
from features.columns import CUSTOMER_ID, CUTOFF
from model.calibration import Calibrator
from model.encoding import Encoding
from training import select
from training.baselines import LogisticBaseline, RecencyBaseline, bgnbd_baseline
from training.dataset import TrainingTable
from training.model import fit

HOLDOUT_FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    """A named set of LightGBM parameters."""

    name: str
    lightgbm: LightGBMConfig
    monotone: bool = False
    weighting: str = "equal"
    # False: served only where there is no inner origin (as the first candidate),
    # never fitted for the inner choice
    contends: bool = True

    def variant(self, **changes) -> Candidate:
        """This candidate with monotone constraints or another cutoff weighting."""
        import dataclasses

        suffix = "+monotone" if changes.get("monotone") else ""
        suffix += f"+{changes['weighting']}" if "weighting" in changes else ""
        return dataclasses.replace(self, name=self.name + suffix, **changes)


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
    rows: pd.DataFrame,
    target: str,
    table: TrainingTable,
    config: LightGBMConfig | Candidate,
    horizon_days: int = 0,
) -> Fitted:
    """Early-stopped on the held-out customers, refitted on every row (a
    `Candidate`: with its monotone constraints and cutoff weights)."""
    candidate = config if isinstance(config, Candidate) else Candidate("", config)
    names, categorical = table.catalogue.names, table.catalogue.categorical
    encoding = Encoding.fit(rows, names, categorical)
    x, y = encoding.to_matrix(rows), rows[target].to_numpy()
    held = held_out(rows[CUSTOMER_ID])
    for part, name in ((~held, "fitting"), (held, "early-stopping")):
        if len(np.unique(y[part])) < 2:
            raise ValueError(f"{target}: the {name} rows hold a single class")
    weight = select.cutoff_weights(rows[CUTOFF], candidate.weighting, horizon_days)
    monotone = (
        select.monotone_constraints(list(encoding.features), target)
        if candidate.monotone
        else None
    )
    lgb_config = candidate.lightgbm
    stopped = fit(
        x[~held],
        y[~held],
        encoding,
        lgb_config,
        valid=(x[held], y[held]),
        weight=None if weight is None else weight[~held],
        monotone=monotone,
    )
    rounds = max(stopped.best_iteration, 1)
    final = fit(
        x, y, encoding, lgb_config, rounds=rounds, weight=weight, monotone=monotone
    )
    return Fitted(final, encoding, rounds)


def rows_at(table: TrainingTable, cutoffs: Sequence[datetime]) -> pd.DataFrame:
    return table.frame[table.frame[CUTOFF].isin(list(cutoffs))]


scores = select.scores


LIGHTGBM, BLEND = "lightgbm", "blend"


@dataclass(frozen=True)
class Purchases:
    """What BG/NBD reads (purchase events and the roles), when it applies."""

    events: pd.DataFrame
    role_of: dict[str, str]
    # BG/NBD fits by (origin, horizon): each origin is fitted once
    fits: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Baselines:
    """The baselines fitted on one set of training rows."""

    target: str
    train: pd.DataFrame
    horizon_days: int
    encoding: Encoding
    purchases: Purchases | None
    logreg: LogisticBaseline = None  # type: ignore[assignment]
    recency: RecencyBaseline = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        y = self.train[self.target].to_numpy()
        self.recency = RecencyBaseline(self.target).fit(self.train, y)
        self.logreg = LogisticBaseline(self.encoding, 200_000).fit(
            self.encoding.to_matrix(self.train), y
        )

    def predict(self, rows: pd.DataFrame, at: datetime) -> dict[str, np.ndarray]:
        out = {
            "logreg": self.logreg.predict(self.encoding.to_matrix(rows)),
            "recency": self.recency.predict(rows),
        }
        if self.purchases is not None:
            out["bgnbd"] = bgnbd_baseline(
                self.purchases.events,
                rows,
                self.train,
                self.train[self.target].to_numpy(),
                at,
                self.horizon_days,
                self.purchases.role_of,
                self.purchases.fits,
            )
        return out


def _usable(predictions: dict[str, np.ndarray]) -> list[str]:
    return [n for n, p in predictions.items() if np.isfinite(p).all()]


@dataclass(frozen=True)
class Choice:
    """What was chosen at the inner origin and the figures that chose it: `kind`
    (lightgbm, blend or a baseline), the LightGBM candidate (also the blend's
    trees), the blend's weights, the calibrator and its cross-fitted log losses."""

    candidate: Candidate
    inner_origin: datetime | None
    inner: dict[str, dict[str, float]]
    calibrator: Calibrator
    kind: str = LIGHTGBM
    reason: str = "no inner origin: the first candidate, raw"
    stacker: select.Stacker | None = None
    blend_inputs: tuple[str, ...] = ()
    calibration_log_loss: dict[str, float] = field(default_factory=dict)


@dataclass
class Memo:
    """The fits of one training table, by what they were fitted on: an origin's
    inner origin is often an earlier origin (CDNOW's origins are one horizon
    apart), whose final trees and baselines were fitted on the same cutoffs.
    A fit is a function of the rows, the target, the candidate and the horizon,
    so reusing it changes no figure. `table` holds the same rows at each of its
    cutoffs as the table the models are chosen on (that table, or one it was cut
    from: quality.Shared)."""

    table: TrainingTable
    fits: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)

    def fitted(
        self, target: str, cutoffs: Sequence[datetime], c: Candidate, horizon: int
    ) -> Fitted:
        key = (target, tuple(cutoffs), c.name, horizon)
        if key not in self.fits:
            rows = rows_at(self.table, cutoffs)
            self.fits[key] = fit_rows(rows, target, self.table, c, horizon)
        return self.fits[key]

    def baselines_of(
        self,
        target: str,
        cutoffs: Sequence[datetime],
        horizon: int,
        purchases: Purchases | None,
    ) -> Baselines:
        key = (target, tuple(cutoffs), horizon, purchases is not None)
        if key not in self.baselines:
            t = self.table
            rows = rows_at(t, cutoffs)
            encoding = Encoding.fit(rows, t.catalogue.names, t.catalogue.categorical)
            self.baselines[key] = Baselines(target, rows, horizon, encoding, purchases)
        return self.baselines[key]


def choose(
    table: TrainingTable,
    target: str,
    horizon_days: int,
    train_cutoffs: list[datetime],
    candidates: Sequence[Candidate],
    calibration: str = "auto",
    purchases: Purchases | None = None,
    memo: Memo | None = None,
) -> Choice:
    """Every candidate trained on the cutoffs whose windows end by the latest
    training cutoff and scored there; `select.pick` keeps one. Without such
    cutoffs: the first candidate, uncalibrated."""
    memo = memo if memo is not None else Memo(table)
    inner = train_cutoffs[-1]
    before = [c for c in train_cutoffs if c + timedelta(days=horizon_days) <= inner]
    at = rows_at(table, [inner])
    if not before or at[target].nunique() < 2:
        return Choice(candidates[0], None, {}, Calibrator())
    y = at[target].to_numpy()

    def trees(c: Candidate) -> np.ndarray:
        return memo.fitted(target, before, c, horizon_days).predict(at)

    contenders = [c for c in candidates if c.contends] or list(candidates)
    predicted = {c.name: trees(c) for c in contenders}
    lgb_scores = {name: scores(y, p) for name, p in predicted.items()}
    best = min(contenders, key=lambda c: lgb_scores[c.name]["logloss"])
    variants = [best.variant(monotone=True), best.variant(weighting="recent")]
    for v in variants:
        predicted[v.name] = trees(v)
        lgb_scores[v.name] = scores(y, predicted[v.name])
    pool = [*contenders, *variants]
    best = min(pool, key=lambda c: lgb_scores[c.name]["logloss"])
    baselines = memo.baselines_of(target, before, horizon_days, purchases)
    base = baselines.predict(at, inner)
    inputs = (best.name, *_usable(base))
    columns = [predicted[best.name], *(base[n] for n in inputs[1:])]
    groups = select.folds_of(at[CUSTOMER_ID].to_numpy())
    blended = select.oof_stack(columns, y, groups)
    figures = {
        **{f"{LIGHTGBM}:{n}": s for n, s in lgb_scores.items()},
        BLEND: scores(y, blended),
        **{n: scores(y, p) for n, p in base.items()},
    }
    served = {LIGHTGBM: predicted[best.name], BLEND: blended, **base}
    pickable = {
        LIGHTGBM: figures[f"{LIGHTGBM}:{best.name}"],
        BLEND: figures[BLEND],
        **{n: figures[n] for n in base},
    }
    kind, reason = select.pick(pickable, {n: figures[n] for n in base})
    methods = select.METHODS if calibration == "auto" else (calibration,)
    cal = select.choose_calibration(served[kind], y, groups, methods)
    return Choice(
        best,
        inner,
        figures,
        select.fit_calibrator(cal.method, served[kind], y),
        kind,
        reason,
        select.fit_stacker(columns, y) if kind == BLEND else None,
        ("lightgbm", *inputs[1:]),
        cal.log_loss,
    )


@dataclass(frozen=True)
class OriginModel:
    fitted: Fitted
    choice: Choice
    train_cutoffs: list[datetime]
    baselines: Baselines
    origin: datetime

    def baseline_predictions(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """The baselines fitted on the model's training rows, at the origin."""
        return self.baselines.predict(rows, self.origin)

    def predict(
        self, rows: pd.DataFrame, base: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw and calibrated probabilities (`base`: the baselines' predictions
        on `rows`, when already made)."""
        kind = self.choice.kind
        if kind == LIGHTGBM:
            raw = self.fitted.predict(rows)
        else:
            base = base if base is not None else self.baseline_predictions(rows)
            if kind == BLEND:
                stacker = self.choice.stacker
                assert stacker is not None
                columns = [self.fitted.predict(rows)]
                columns += [base[n] for n in self.choice.blend_inputs[1:]]
                raw = stacker.apply(columns)
            else:
                raw = base[kind]
        return raw, self.choice.calibrator.apply(raw)


def model_for(
    table: TrainingTable,
    target: str,
    horizon_days: int,
    origin: datetime,
    candidates: Sequence[Candidate],
    calibration: str = "auto",
    purchases: Purchases | None = None,
    memo: Memo | None = None,
) -> OriginModel:
    """Choose, fit and calibrate the model for `origin` on the table's cutoffs
    whose label windows end by it (`memo`: the fits made for earlier origins
    of the same table, reused where the rows are the same)."""
    train = [c for c in table.cutoffs if c + timedelta(days=horizon_days) <= origin]
    if not train:
        raise ValueError(
            f"{target}: no cutoff's {horizon_days}-day window ends by {origin:%Y-%m-%d}"
        )
    memo = memo if memo is not None else Memo(table)
    choice = choose(
        table, target, horizon_days, train, candidates, calibration, purchases, memo
    )
    fitted = memo.fitted(target, train, choice.candidate, horizon_days)
    baselines = memo.baselines_of(target, train, horizon_days, purchases)
    return OriginModel(fitted, choice, train, baselines, origin)
