"""Train, track, register and promote one model per target.

Pure steps live in dataset/model/evaluate/promote; this module only wires them to
MLflow: one run per target with parameters, metrics, the Booster with signature
and input example, registered under the target's name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import lightgbm
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from features.columns import TARGETS
from features.config import ProjectConfig
from features.definition import FeatureSpec
from features.encode import Encoding
from features.labels import LabelSpec
from features.load import Dataset
from training.dataset import (
    Split,
    TrainingTable,
    build_training_table,
    out_of_time_split,
)
from training.evaluate import RecencyBaseline, metrics
from training.model import fit, lgb_params
from training.promote import CHAMPION, Decision, decide, record
from training.registry import METADATA_KEY, RegisteredModel, configure, load_alias

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = [
    f"lightgbm=={lightgbm.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
]


@dataclass(frozen=True)
class TargetResult:
    target: str
    model_name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    decision: Decision
    valid_cutoff: datetime


def train_all(
    config: ProjectConfig,
    ds: Dataset,
    tracking_uri: str,
    targets: tuple[str, ...] = TARGETS,
) -> list[TargetResult]:
    spec = FeatureSpec.from_config(config)
    labels = LabelSpec.from_config(config)
    _, last = ds.time_range()
    cutoffs = config.training.cutoffs.resolve(last)
    table = build_training_table(ds, spec, labels, cutoffs)
    # every target's split first: a target that cannot be trained fails the run
    # before anything is written to MLflow
    splits = {target: out_of_time_split(table, target, labels) for target in targets}
    experiment_id = configure(tracking_uri, config.mlflow.experiment)
    client = MlflowClient(tracking_uri, tracking_uri)
    context = {
        "config": config.model_dump(mode="json"),
        "fingerprint": ds.fingerprint(),
        "training_id": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
    }
    return [
        _train_target(
            config, table, splits[target], labels, experiment_id, client, context
        )
        for target in targets
    ]


def _train_target(
    config: ProjectConfig,
    table: TrainingTable,
    split: Split,
    labels: LabelSpec,
    experiment_id: str | None,
    client: MlflowClient,
    context: dict,
) -> TargetResult:
    started = time.perf_counter()
    target = split.target
    encoding = Encoding.fit(
        split.train, table.catalogue.names, table.catalogue.categorical
    )
    x_train, x_valid = encoding.to_matrix(split.train), encoding.to_matrix(split.valid)
    y_train, y_valid = split.train[target].to_numpy(), split.valid[target].to_numpy()
    booster = fit(
        x_train, y_train, x_valid, y_valid, encoding, config.training.lightgbm
    )
    p_valid = booster.predict(x_valid)
    model_metrics = metrics(y_valid, p_valid)
    baseline = RecencyBaseline(target).fit(split.train, y_train)
    baseline_metrics = metrics(y_valid, baseline.predict(split.valid))
    name = config.model_name(target)
    champion = load_alias(client.tracking_uri, name, CHAMPION)

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{target}-{context['training_id']}"
    ) as run:
        _log_run(config, table, split, target, encoding, booster, context, labels)
        mlflow.log_metrics({f"valid_{k}": v for k, v in model_metrics.items()})
        mlflow.log_metrics(
            {f"baseline_recency_{k}": v for k, v in baseline_metrics.items()}
        )
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
        frame = pd.DataFrame(x_valid[:5], columns=list(encoding.features))
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, p_valid[:5]),
            input_example=frame,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
            metadata={METADATA_KEY: _metadata(target, encoding, table, split, context)},
        )
        version = str(info.registered_model_version)
        decision = _decide(champion, split, target, model_metrics["log_loss"])
        mlflow.set_tags(
            {
                "promotion.decision": str(decision.promote),
                "promotion.reason": decision.reason,
            }
        )
    record(client, name, version, decision, split.valid_cutoff)
    log.info("%s v%s: %s", name, version, decision.reason)
    return TargetResult(
        target,
        name,
        version,
        run.info.run_id,
        model_metrics,
        baseline_metrics,
        decision,
        split.valid_cutoff,
    )


def _decide(
    champion: RegisteredModel | None, split: Split, target: str, challenger_loss: float
) -> Decision:
    if champion is None:
        return decide(challenger_loss, None, None)
    if not set(champion.encoding.features) <= set(split.valid.columns):
        return decide(challenger_loss, None, champion.version, comparable=False)
    p = champion.booster.predict(champion.encoding.to_matrix(split.valid))
    champion_loss = metrics(split.valid[target].to_numpy(), p)["log_loss"]
    return decide(challenger_loss, champion_loss, champion.version)


def _metadata(
    target: str, encoding: Encoding, table: TrainingTable, split: Split, context: dict
) -> dict:
    return {
        "target": target,
        "encoding": encoding.to_dict(),
        "feature_set_version": table.catalogue.version(),
        "validation_cutoff": split.valid_cutoff.strftime("%Y-%m-%d"),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_id": context["training_id"],
    }


def _log_run(
    config: ProjectConfig,
    table: TrainingTable,
    split: Split,
    target: str,
    encoding: Encoding,
    booster: lightgbm.Booster,
    context: dict,
    labels: LabelSpec,
) -> None:
    fingerprint = context["fingerprint"]
    mlflow.set_tags({"target": target, "training_id": context["training_id"]})
    mlflow.log_params(
        {
            "target": target,
            "horizon_days": labels.horizons[target],
            "train_cutoffs": ",".join(
                c.strftime("%Y-%m-%d") for c in split.train_cutoffs
            ),
            "valid_cutoff": split.valid_cutoff.strftime("%Y-%m-%d"),
            "n_train": len(split.train),
            "n_valid": len(split.valid),
            "n_features": len(encoding.features),
            "features": ",".join(encoding.features),
            "feature_set_version": table.catalogue.version(),
            "best_iteration": booster.best_iteration,
            **{f"data_{k}": v for k, v in fingerprint.items()},
            **{f"lgb_{k}": v for k, v in lgb_params(config.training.lightgbm).items()},
        }
    )
    mlflow.log_dict(context["config"], "config.json")
    mlflow.log_dict(
        {
            "features": [
                {
                    "name": f.name,
                    "role": f.role,
                    "window_days": f.window_days,
                    "description": f.description,
                    "categorical": f.categorical,
                }
                for f in table.catalogue.features
            ]
        },
        "features.json",
    )
