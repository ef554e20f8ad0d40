"""Uplift models per target from logged campaigns: fit, evaluate over keyed-hash
splits, track, register and promote.

Input: one row per (campaign, customer) of campaigns whose outcome window has
passed: the customer's features at selection, `treated` (1 treatment, 0 the
keyed-hash control) and `outcome` (the target's label over its horizon from
confirmation). Built by serving.outreach.campaign_rows; the CLI wires the two.

Evaluation: `splits` keyed-hash splits of the customers (HMAC-SHA256 of the
split number and the customer id under a fixed key, so a customer is held out
of the same split in every run and every campaign); on each split's held-out
customers, the Qini coefficient and uplift at 10/20/30% (training.uplift_metrics)
of the T- and X-learners beside ranking by the target's probability (the score
each customer was selected on when the contact log kept it, else a LightGBM
outcome model fitted on the training part's control customers for churn, the
risk without contact, and on its treated customers otherwise, the response to
contact) and a keyed random ranking; means over the splits with their standard
deviation.

Registration: the chosen learner (`training.uplift.learner`; `auto` = the
higher mean Qini) refitted on split 0's training part is registered as
`<prefix><target>-uplift` (model.uplift) and made `champion` only when its Qini
on split 0's held-out customers beats the current champion's on the same
customers (both were fitted without them: the split is a hash of the customer),
or, with no champion yet, beats random targeting (Qini > 0).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from core.config import ProjectConfig
from core.config.training import UpliftConfig
from features.columns import CUSTOMER_ID
from model.encoding import Encoding
from model.registry import CHALLENGER, METADATA_KEY, configure, load_uplift_alias
from model.uplift import (
    CONTROL,
    LEARNERS,
    TAU_CONTROL,
    TAU_TREATED,
    TREATED,
    UpliftModel,
    direction,
    registered_name,
)
from training import uplift_metrics
from training.promote import move

log = logging.getLogger(__name__)

TREATED_COLUMN, OUTCOME_COLUMN, SCORE_COLUMN = "treated", "outcome", "score"
PROBABILITY, RANDOM = "probability", "random"
APPROACHES = (*LEARNERS, PROBABILITY, RANDOM)
SPLIT_KEY = b"propensity-uplift-split"
KIND_UPLIFT = "uplift"


class UpliftSkipped(ValueError):
    """Too few treated or control customers (or outcomes) to fit an uplift model."""


def _uniform(message: str) -> float:
    """A uniform number in [0, 1) fixed by the message: HMAC-SHA256 under the
    fixed split key, its first 8 bytes / 2**64."""
    digest = hmac.new(SPLIT_KEY, message.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(
    customer_ids: Sequence[str] | np.ndarray, split: int, share: float
) -> np.ndarray:
    """True for the customers held out of split `split`: the uniform draw of
    "<split>\x1f<id>" below `share`."""
    return np.array(
        [_uniform(f"{split}\x1f{c}") < share for c in customer_ids], dtype=bool
    )


def random_scores(customer_ids: Sequence[str] | np.ndarray, split: int) -> np.ndarray:
    """Random targeting's score: a keyed uniform draw per customer and split."""
    return np.array(
        [_uniform(f"random{split}\x1f{c}") for c in customer_ids], dtype=np.float64
    )


def lgb_params(config: UpliftConfig, objective: str) -> dict:
    return {
        "objective": objective,
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "lambda_l2": config.lambda_l2,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def _booster(
    x: np.ndarray, y: np.ndarray, encoding: Encoding, config: UpliftConfig, objective
) -> lgb.Booster:
    data = lgb.Dataset(
        x,
        y,
        feature_name=list(encoding.features),
        categorical_feature=encoding.categorical,
        free_raw_data=True,
    )
    return lgb.train(
        lgb_params(config, objective), data, num_boost_round=config.num_boost_round
    )


def check_groups(treated: np.ndarray, outcome: np.ndarray, minimum: int) -> None:
    """UpliftSkipped unless each group has `minimum` customers and both
    outcome classes."""
    for name, mask in (("treatment", treated == 1), ("control", treated == 0)):
        n, positives = int(mask.sum()), int(outcome[mask].sum())
        if n < minimum:
            raise UpliftSkipped(
                f"{name} group: {n} customer(s) with a matured outcome, fewer than "
                f"training.uplift.min_group_customers ({minimum})"
            )
        if positives in (0, n):
            raise UpliftSkipped(
                f"{name} group: the outcome is {positives} of {n}: both classes needed"
            )


def fit(
    learner: str,
    x: np.ndarray,
    treated: np.ndarray,
    outcome: np.ndarray,
    encoding: Encoding,
    target: str,
    config: UpliftConfig,
) -> UpliftModel:
    """A T- or X-learner (model.uplift) on one matrix and its groups."""
    t, y = treated == 1, outcome.astype(np.float64)
    boosters = {
        TREATED: _booster(x[t], y[t], encoding, config, "binary"),
        CONTROL: _booster(x[~t], y[~t], encoding, config, "binary"),
    }
    if learner == "x":
        imputed_t = y[t] - boosters[CONTROL].predict(x[t])
        imputed_c = boosters[TREATED].predict(x[~t]) - y[~t]
        boosters[TAU_TREATED] = _booster(x[t], imputed_t, encoding, config, "l2")
        boosters[TAU_CONTROL] = _booster(x[~t], imputed_c, encoding, config, "l2")
    return UpliftModel(learner, target, encoding, boosters, float(t.mean()))


def probability_model(
    x: np.ndarray,
    treated: np.ndarray,
    outcome: np.ndarray,
    encoding: Encoding,
    config: UpliftConfig,
    target: str,
) -> lgb.Booster:
    """ "Rank by probability" where no score at selection is logged: a LightGBM
    model of the outcome's probability, fitted on the control for churn (the
    risk without contact: what a churn model trained on uncontacted history
    estimates) and on the treated otherwise (who responds when contacted: what
    a response model targets)."""
    fit_on = treated == (0 if direction(target) < 0 else 1)
    return _booster(
        x[fit_on], outcome[fit_on].astype(float), encoding, config, "binary"
    )


def _probability_source(target: str, logged: bool) -> str:
    if logged:
        return "the score at selection (contact log)"
    group = "control" if direction(target) < 0 else "treated"
    return f"a LightGBM outcome model fitted on the {group} customers"


@dataclass(frozen=True)
class Evaluation:
    """Per split and approach the figures, and their means and spreads."""

    target: str
    per_split: list[dict[str, dict[str, float]]]
    probability_source: str
    rows: int
    held_out_rows: list[int]

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            a: uplift_metrics.mean_and_spread([s[a] for s in self.per_split])
            for a in APPROACHES
        }

    def best_learner(self) -> str:
        means = self.summary()
        return max(LEARNERS, key=lambda a: means[a]["qini"])

    def flat(self) -> dict[str, float]:
        """`<approach>_<figure>` and `<approach>_<figure>_std`, for MLflow."""
        return {
            f"{a}_{k}": v
            for a, figures in self.summary().items()
            for k, v in figures.items()
            if math.isfinite(v)
        }


def wanted(outcome: np.ndarray, target: str) -> np.ndarray:
    """The outcome in the wanted direction (1 = good): not churning for churn."""
    return outcome if direction(target) > 0 else 1 - outcome


def evaluate(
    frame: pd.DataFrame,
    encoding: Encoding,
    target: str,
    config: UpliftConfig,
    splits: int | None = None,
) -> Evaluation:
    """Every approach on the held-out customers of each keyed-hash split."""
    ids = frame[CUSTOMER_ID].astype(str).to_numpy()
    x = encoding.to_matrix(frame)
    t = frame[TREATED_COLUMN].to_numpy(dtype=np.int64)
    y = frame[OUTCOME_COLUMN].to_numpy(dtype=np.int64)
    check_groups(t, y, config.min_group_customers)
    logged = SCORE_COLUMN in frame.columns and frame[SCORE_COLUMN].notna().all()
    per_split, sizes = [], []
    for split in range(splits or config.splits):
        test = held_out(ids, split, config.held_out_share)
        tr = ~test
        figures = {}
        for learner in LEARNERS:
            model = fit(learner, x[tr], t[tr], y[tr], encoding, target, config)
            figures[learner] = model.benefit(x[test])
        if logged:
            figures[PROBABILITY] = frame[SCORE_COLUMN].to_numpy(float)[test]
        else:
            booster = probability_model(x[tr], t[tr], y[tr], encoding, config, target)
            figures[PROBABILITY] = booster.predict(x[test])
        figures[RANDOM] = random_scores(ids[test], split)
        good = wanted(y[test], target)
        per_split.append(
            {a: uplift_metrics.summary(s, good, t[test]) for a, s in figures.items()}
        )
        sizes.append(int(test.sum()))
    return Evaluation(
        target, per_split, _probability_source(target, logged), len(frame), sizes
    )


@dataclass(frozen=True)
class UpliftResult:
    target: str
    model_name: str
    version: str
    learner: str
    evaluation: Evaluation
    promoted: bool
    reason: str
    gate_qini: float
    champion_qini: float | None
    run_id: str


def _gate_qini(
    model: UpliftModel, frame: pd.DataFrame, test: np.ndarray, target: str
) -> float:
    rows = frame[test]
    return uplift_metrics.qini_coefficient(
        model.benefit(model.encoding.to_matrix(rows)),
        wanted(rows[OUTCOME_COLUMN].to_numpy(dtype=np.int64), target),
        rows[TREATED_COLUMN].to_numpy(dtype=np.int64),
    )


def _decide(
    challenger: float, champion: float | None, version: str | None
) -> tuple[bool, str]:
    if champion is None:
        ok = challenger > 0
        return ok, (
            f"no champion: held-out Qini {challenger:.6f} "
            + ("beats" if ok else "does not beat")
            + " random targeting (0)"
        )
    ok = challenger > champion
    return ok, (
        f"held-out Qini {challenger:.6f} against champion v{version}'s "
        f"{champion:.6f} on the same customers"
    )


def train_uplift(
    config: ProjectConfig,
    frame: pd.DataFrame,
    encoding: Encoding,
    target: str,
    tracking_uri: str,
    context: dict[str, str] | None = None,
) -> UpliftResult:
    """Evaluate, fit the chosen learner, log a run, register and gate (see the
    module docstring)."""
    settings = config.training.uplift
    evaluation = evaluate(frame, encoding, target, settings)
    learner = (
        evaluation.best_learner() if settings.learner == "auto" else settings.learner
    )
    ids = frame[CUSTOMER_ID].astype(str).to_numpy()
    test = held_out(ids, 0, settings.held_out_share)
    rows = frame[~test]
    model = fit(
        learner,
        encoding.to_matrix(rows),
        rows[TREATED_COLUMN].to_numpy(dtype=np.int64),
        rows[OUTCOME_COLUMN].to_numpy(dtype=np.int64),
        encoding,
        target,
        settings,
    )
    name = registered_name(config.model_name(target))
    gate = _gate_qini(model, frame, test, target)
    champion = load_uplift_alias(tracking_uri, name)
    champion_qini = None
    if champion is not None:
        absent = [f for f in champion.encoding.features if f not in frame.columns]
        if not absent:
            champion_qini = _gate_qini(champion, frame, test, target)
    promote, reason = _decide(
        gate, champion_qini, champion.version if champion else None
    )
    if champion is not None and champion_qini is None:
        # another feature set: the champion cannot score these rows
        promote, reason = _decide(gate, None, None)
        reason = (
            f"champion v{champion.version} reads features not in these rows; {reason}"
        )
    model.metadata = {
        "target": target,
        "learner": learner,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(rows),
        "gate_qini": gate,
        **(context or {}),
    }
    run_id, version = _log(config, tracking_uri, model, evaluation, name, gate)
    client = MlflowClient(tracking_uri, tracking_uri)
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_model_version_tag(name, version, "uplift.reason", reason)
    if promote:
        move(
            client,
            config.mlflow.experiment,
            name,
            version,
            kind="gate",
            reason=reason,
            figures={"gate_qini": gate},
        )
    log.info("%s v%s (%s): %s", name, version, learner, reason)
    return UpliftResult(
        target,
        name,
        version,
        learner,
        evaluation,
        promote,
        reason,
        gate,
        champion_qini,
        run_id,
    )


def _log(
    config: ProjectConfig,
    tracking_uri: str,
    model: UpliftModel,
    evaluation: Evaluation,
    name: str,
    gate: float,
) -> tuple[str, str]:
    """One run `uplift-<target>` in the project's experiment with the settings,
    the figures per approach (means and spreads), the per-split figures and the
    registered model; returns (run id, version)."""
    experiment_id = configure(tracking_uri, config.mlflow.experiment)
    settings = config.training.uplift
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"uplift-{evaluation.target}",
        tags={"kind": KIND_UPLIFT, "target": evaluation.target},
    ) as run:
        mlflow.log_params(
            {
                "target": evaluation.target,
                "learner": model.learner,
                "rows": evaluation.rows,
                "splits": len(evaluation.per_split),
                "held_out_share": settings.held_out_share,
                "probability_ranking": evaluation.probability_source,
                "treated_share": model.treated_share,
                "features": ",".join(model.encoding.features),
                **{
                    f"lgb_{k}": v
                    for k, v in lgb_params(settings, "binary").items()
                    if k != "objective"
                },
                "num_boost_round": settings.num_boost_round,
            }
        )
        mlflow.log_metrics({**evaluation.flat(), "gate_qini": gate})
        mlflow.log_dict(
            {"per_split": evaluation.per_split, "summary": evaluation.summary()},
            "uplift_evaluation.json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = model.save(Path(tmp) / "uplift")
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module="model.uplift",
                data_path=str(folder),
                pip_requirements=[
                    f"lightgbm=={lgb.__version__}",
                    f"numpy=={np.__version__}",
                    f"pandas=={pd.__version__}",
                ],
                registered_model_name=name,
                metadata={METADATA_KEY: {"uplift": model.metadata}},
            )
        version = str(info.registered_model_version)
        mlflow.set_tags({"registered_model": name, "registered_version": version})
    return run.info.run_id, version


def render(summary: dict[str, dict[str, float]], chosen: str | None = None) -> str:
    """Per approach the mean Qini and uplift at 10/20/30% with their spreads."""
    names = {
        "t": "T-learner",
        "x": "X-learner",
        PROBABILITY: "rank by probability",
        RANDOM: "random",
    }
    lines = [
        f"{'ranking':22} {'Qini':>20} "
        + " ".join(f"{f'uplift@{k}%':>20}" for k in (10, 20, 30))
    ]
    for approach in APPROACHES:
        figures = summary[approach]
        mark = " *" if approach == chosen else ""
        cells = [
            f"{figures[f]:>10.5f} +- {figures[f + '_std']:<6.4f}"
            for f in ("qini", "uplift_at_10", "uplift_at_20", "uplift_at_30")
        ]
        lines.append(f"{names[approach] + mark:22} " + " ".join(cells))
    lines.append("mean +- sd over the keyed-hash splits; * the registered learner")
    return "\n".join(lines)


def champion_report(tracking_uri: str, name: str) -> dict | None:
    """The champion's evaluation (the run's uplift_evaluation.json), its
    version, learner and gate figure; None without a champion."""
    from model.registry import CHAMPION

    client = MlflowClient(tracking_uri, tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    run = client.get_run(mv.run_id)
    found = mlflow.artifacts.load_dict(
        f"{run.info.artifact_uri}/uplift_evaluation.json"
    )
    return {
        "model": name,
        "version": str(mv.version),
        "learner": run.data.params.get("learner"),
        "rows": run.data.params.get("rows"),
        "probability_ranking": run.data.params.get("probability_ranking"),
        "gate_qini": run.data.metrics.get("gate_qini"),
        "reason": mv.tags.get("uplift.reason"),
        **found,
    }
