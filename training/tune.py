"""Search LightGBM parameters for one target on the backtest's origins.

Each Optuna trial samples the tuned parameters (`SEARCH`) and is scored by the mean
log loss of the trees over the backtest origins, fitted as the backtest fits them
(training/backtest.py: fit on the fold's fitting cutoffs, early-stop on its
early-stopping cutoff, score on the origin). No baselines and no calibration: the
score is the backtest's `lightgbm` log loss for those parameters. The training table
is built once and every fold encoded once; trials only fit trees.

Trial 0 is the config's own parameters, so the improvement is measured against what
`propensity train` fits today. The search ranges are widened, where needed, to hold
the config's values.

Tracking: a parent run `tune-<target>-<id>` (tags kind=tune, target) with one nested
run per trial (kind=trial), and on the parent the best parameters, the best and the
config's values and `best_lightgbm.yaml`, a block to paste under
`training.lightgbm`. Nothing is registered and no alias moves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import mlflow
import numpy as np
import optuna
import yaml
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from core.config import LightGBMConfig, ProjectConfig
from features.definition import FeatureSpec
from features.labels import LabelSpec
from features.sources.load import Dataset
from model.registry import configure
from training.backtest import FoldData, fit_fold, fold_data, plan
from training.dataset import build_training_table
from training.metrics import metrics

log = logging.getLogger(__name__)

KIND_TUNE, KIND_TRIAL = "tune", "trial"
ARTIFACT = "best_lightgbm.yaml"
SCORE = "log_loss"


@dataclass(frozen=True)
class Range:
    """Where a parameter is sampled: uniformly, or uniformly in its logarithm."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def holding(self, value: float) -> Range:
        """The range widened just enough to hold `value`."""
        return replace(self, low=min(self.low, value), high=max(self.high, value))


# lambda_l2 is sampled on a linear scale: its default, 0, has no logarithm.
SEARCH: dict[str, Range] = {
    "num_leaves": Range(7, 127, log=True, integer=True),
    "learning_rate": Range(0.01, 0.3, log=True),
    "min_data_in_leaf": Range(10, 500, log=True, integer=True),
    "feature_fraction": Range(0.4, 1.0),
    "bagging_fraction": Range(0.4, 1.0),
    "lambda_l2": Range(0.0, 10.0),
}

Params = dict[str, float | int]


def search_space(base: LightGBMConfig) -> dict[str, Range]:
    """`SEARCH`, each range widened to hold the config's value (trial 0)."""
    return {name: r.holding(getattr(base, name)) for name, r in SEARCH.items()}


def config_params(base: LightGBMConfig) -> Params:
    """The config's values of the tuned parameters."""
    return {name: getattr(base, name) for name in SEARCH}


def suggest(trial: optuna.Trial, space: dict[str, Range]) -> Params:
    params: Params = {}
    for name, r in space.items():
        if r.integer:
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


def with_params(base: LightGBMConfig, params: Params) -> LightGBMConfig:
    """The config with `params` in place, validated."""
    return LightGBMConfig.model_validate({**base.model_dump(), **params})


@dataclass(frozen=True)
class Score:
    """The trees' figures at each origin, for one set of parameters."""

    origins: list[datetime]
    log_loss: list[float]
    roc_auc: list[float]
    best_iteration: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.log_loss))


def score(folds: list[FoldData], lgb_config: LightGBMConfig) -> Score:
    """Fit the trees of every fold and score them on its origin."""
    origins, losses, aucs, rounds = [], [], [], []
    for data in folds:
        booster = fit_fold(data, lgb_config)
        figures = metrics(data.y_origin, booster.predict(data.x_origin))
        origins.append(data.fold.origin)
        losses.append(figures[SCORE])
        aucs.append(figures["roc_auc"])
        rounds.append(max(booster.best_iteration, 1))
    return Score(origins, losses, aucs, rounds)


def snippet(lgb_config: LightGBMConfig, comment: str) -> str:
    """YAML for `training.lightgbm`: every key, so the block alone reproduces the
    trial (the untuned keys keep the config's values)."""
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + yaml.safe_dump(lgb_config.model_dump(), sort_keys=False)


@dataclass(frozen=True)
class TuneResult:
    target: str
    run_name: str
    run_id: str
    trials: int
    baseline: float
    best: float
    best_trial: int
    best_params: Params
    snippet: str

    @property
    def improvement(self) -> float:
        """How much lower the best mean log loss is than the config's."""
        return self.baseline - self.best


def tune(
    config: ProjectConfig,
    ds: Dataset,
    tracking_uri: str,
    target: str,
    trials: int,
    timeout: float | None = None,
    seed: int | None = None,
) -> TuneResult:
    """Run the search for `target`: at most `trials` trials, none started after
    `timeout` seconds; the sampler is seeded with `seed` (default: the config's
    LightGBM seed)."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    config.targets.section(target)  # a clear error when it is not listed
    spec = FeatureSpec.from_config(config)
    labels = LabelSpec.from_config(config)
    _, last = ds.time_range()
    table = build_training_table(
        ds,
        spec,
        labels,
        config.training.cutoffs.resolve(last),
        complete_through=config.data.as_of,
    ).population(target)
    target_plan = plan(table, target, labels, config.training.backtest.origins)
    folds = [fold_data(table, fold, target) for fold in target_plan.folds]
    base = config.training.lightgbm
    space = search_space(base)
    seed = base.seed if seed is None else seed

    experiment_id = configure(tracking_uri, config.mlflow.experiment)
    tune_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_name = f"tune-{target}-{tune_id}"
    study = optuna.create_study(
        study_name=run_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    study.enqueue_trial(config_params(base))
    tags = {"target": target, "tune_id": tune_id}

    def objective(trial: optuna.Trial) -> float:
        return _trial(trial, space, base, folds, experiment_id, tags)

    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags={"kind": KIND_TUNE, **tags},
    ) as parent:
        mlflow.log_params(
            {
                "target": target,
                "horizon_days": target_plan.horizon_days,
                "origins": ",".join(f"{f.origin:%Y-%m-%d}" for f in target_plan.folds),
                "trials": trials,
                "timeout": timeout,
                "seed": seed,
                "n_rows": len(table.frame),
                "feature_set_version": table.catalogue.version(),
                **{f"data_{k}": v for k, v in ds.fingerprint().items()},
                **{f"space_{k}": _describe(r) for k, r in space.items()},
            }
        )
        study.optimize(objective, n_trials=trials, timeout=timeout)
        result = _result(study, base, target, run_name, parent.info.run_id)
        mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
        mlflow.log_metrics(
            {
                f"baseline_{SCORE}_mean": result.baseline,
                f"best_{SCORE}_mean": result.best,
                f"{SCORE}_improvement": result.improvement,
                "best_trial": result.best_trial,
                "trials_completed": result.trials,
            }
        )
        mlflow.set_tag("best_trial_run_id", study.best_trial.user_attrs["run_id"])
        mlflow.log_text(result.snippet, ARTIFACT)
    log.info(
        "%s: best mean log loss %.5f (trial %d), config's %.5f",
        target,
        result.best,
        result.best_trial,
        result.baseline,
    )
    return result


def _describe(r: Range) -> str:
    scale = "log" if r.log else "linear"
    return f"[{r.low}, {r.high}] {scale}{' int' if r.integer else ''}"


def _trial(
    trial: optuna.Trial,
    space: dict[str, Range],
    base: LightGBMConfig,
    folds: list[FoldData],
    experiment_id: str,
    tags: dict[str, str],
) -> float:
    """One trial: sample, fit and score every fold, log a nested run."""
    started = time.perf_counter()
    lgb_config = with_params(base, suggest(trial, space))
    # a nested run goes to the active experiment, not its parent's, unless told
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{tags['target']}/trial-{trial.number}",
        nested=True,
        tags={"kind": KIND_TRIAL, "trial": str(trial.number), **tags},
    ) as run:
        trial.set_user_attr("run_id", run.info.run_id)
        mlflow.log_params(lgb_config.model_dump())
        result = score(folds, lgb_config)
        MlflowClient().log_batch(run.info.run_id, metrics=_history(result))
        mlflow.log_metrics(
            {
                f"backtest_{SCORE}_mean": result.mean,
                "backtest_roc_auc_mean": float(np.mean(result.roc_auc)),
                "trial_seconds": time.perf_counter() - started,
            }
        )
    log.info(
        "%s trial %d: mean log loss %.5f %s",
        tags["target"],
        trial.number,
        result.mean,
        trial.params,
    )
    return result.mean


def _history(result: Score) -> list[Metric]:
    """Per-origin figures as MLflow history: step k, timestamp = the origin date."""
    out = []
    for k, origin in enumerate(result.origins):
        stamp = int(origin.replace(tzinfo=UTC).timestamp() * 1000)
        out += [
            Metric(f"backtest_{SCORE}", result.log_loss[k], stamp, k),
            Metric("backtest_roc_auc", result.roc_auc[k], stamp, k),
            Metric("best_iteration", result.best_iteration[k], stamp, k),
        ]
    return out


def _result(
    study: optuna.Study,
    base: LightGBMConfig,
    target: str,
    run_name: str,
    run_id: str,
) -> TuneResult:
    done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    best, baseline = study.best_trial, study.trials[0]  # trial 0: the config's
    best_config = with_params(base, best.params)
    comment = (
        f"propensity tune --target {target} (MLflow run {run_name}): trial "
        f"{best.number} of {len(done)}\n"
        f"mean backtest log loss {best.value:.5f}, the config's "
        f"{baseline.value:.5f}\n"
        "replaces training.lightgbm whole; untuned keys keep the config's values"
    )
    return TuneResult(
        target,
        run_name,
        run_id,
        len(done),
        float(baseline.value),
        float(best.value),
        best.number,
        {name: best.params[name] for name in SEARCH},
        snippet(best_config, comment),
    )
