"""Train, track, register and promote one model per target.

Pure steps live in dataset/backtest/model/evaluate/calibrate/promote; this module
wires them to MLflow. One `train-<id>` run holds, per target, sibling runs on the
same backtest origins: `<target>/lightgbm` (the model, registered under the
target's name) and one per baseline (`<target>/recency`, `<target>/logreg`,
`<target>/bgnbd` for purchase).
Each run carries its training table as an MLflow dataset input (name, digest,
source; the rows stay out of MLflow): the whole table on `train-<id>`, the
target's population on its sibling runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import ibis.expr.types as ir
import lightgbm
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.entities import Metric
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from core.config import ProjectConfig
from features.columns import (
    CUSTOMER_ID,
    CUTOFF,
    EVENT_TIME,
    EVENT_TYPE,
    PURCHASE,
)
from features.definition import FeatureSpec
from features.labels import LabelSpec
from features.sources.load import Dataset
from features.sources.privacy import suppressed
from model import drift
from model.blend import Blend, served_raw
from model.encoding import Encoding
from model.registry import CHAMPION, METADATA_KEY, configure, load_alias
from training import fairness, report
from training.backtest import (
    CALIBRATED,
    MODEL,
    Backtest,
    Plan,
    TargetSkipped,
    final_blend,
    fit_final,
    plan,
    run,
)
from training.dataset import (
    TrainingTable,
    as_mlflow_input,
    build_training_table,
    prune_snapshots,
    write_snapshot,
)
from training.label_settings import label_params
from training.model import lgb_params
from training.promote import (
    Decision,
    decide,
    log_predictions,
    predictions_frame,
    record,
)

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = [
    f"lightgbm=={lightgbm.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
]
KIND_TRAINING, KIND_MODEL, KIND_BASELINE = "training", "model", "baseline"
# the dataset inputs' name (`training_table.<target>` on a target's runs) and
# MLflow context
TABLE_NAME, DATASET_CONTEXT = "training_table", "training"


@dataclass(frozen=True)
class TargetResult:
    target: str
    model_name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    decision: Decision
    origins: list[datetime]
    calibration: str
    # cutoffs that are not origins, and why (training.plan)
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trained:
    """What `train_all` did: a result per trained target, and the listed targets
    it skipped (each with its reason and its rows and positives per cutoff)."""

    results: list[TargetResult]
    skipped: list[TargetSkipped]


def train_all(
    config: ProjectConfig,
    ds: Dataset,
    tracking_uri: str,
    targets: tuple[str, ...] | None = None,
) -> Trained:
    """Train the listed targets (`targets.listed()`, or `targets`), each on its
    own population's rows. A target whose backtest has a single class somewhere
    is skipped (reported in `Trained.skipped`); when every one is skipped,
    nothing is written to MLflow."""
    targets = config.targets.listed() if targets is None else targets
    spec = FeatureSpec.from_config(config)
    labels = LabelSpec.from_config(config)
    fairness.check_segments(ds.customers, config.fairness)
    _, last = ds.time_range()
    table = build_training_table(
        ds,
        spec,
        labels,
        config.training.cutoffs.resolve(last),
        complete_through=config.data.as_of,
    )
    # every target's backtest is planned first, on its own population: a target
    # that cannot be trained is skipped before anything is written to MLflow
    tables, plans, skipped = {}, {}, []
    for t in targets:
        tables[t] = table.population(t)
        try:
            plans[t] = plan(tables[t], t, labels, config.training.backtest.origins)
        except TargetSkipped as exc:
            log.info("%s: skipped: %s", t, exc)  # the CLI prints it
            skipped.append(exc)
    trained = [t for t in targets if t in plans]
    if not trained:
        return Trained([], skipped)
    purchases = _purchases(ds, spec) if PURCHASE in trained else None
    experiment_id = configure(tracking_uri, config.mlflow.experiment)
    # nested runs go to the active experiment, not to their parent's
    mlflow.set_experiment(experiment_id=experiment_id)
    client = MlflowClient(tracking_uri, tracking_uri)
    training_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    context = {"fingerprint": ds.fingerprint(), "training_id": training_id}
    snapshots = config.training.snapshot_dir
    if snapshots is not None:
        forgotten = suppressed(config.privacy)
        path = write_snapshot(table.frame, snapshots, training_id, forgotten)
        context["snapshot"] = str(path)
        if config.privacy.retention_days is not None:
            prune_snapshots(snapshots, config.privacy.retention_days)
    source = _table_source(config, context)
    context["datasets"] = {
        t: as_mlflow_input(
            tables[t],
            f"{TABLE_NAME}.{t}",
            source,
            {**context["fingerprint"], "population": t},
        )
        for t in trained
    }
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"train-{training_id}",
        tags={"kind": KIND_TRAINING, "training_id": training_id},
    ):
        mlflow.log_input(
            as_mlflow_input(table, TABLE_NAME, source, context["fingerprint"]),
            context=DATASET_CONTEXT,
        )
        _log_common(config, table, context)
        _log_skipped(skipped)
        results = [
            _train_target(
                config,
                tables[t],
                plans[t],
                purchases,
                spec,
                client,
                context,
                ds.customers,
            )
            for t in trained
        ]
    return Trained(results, skipped)


def _log_skipped(skipped: list[TargetSkipped]) -> None:
    """The skipped targets, their reasons and counts, on the training run."""
    if not skipped:
        return
    mlflow.set_tag("targets.skipped", ",".join(s.target for s in skipped))
    mlflow.log_dict(
        {
            "skipped": [
                {
                    "target": s.target,
                    "reason": s.reason,
                    "per_cutoff": [
                        {
                            "cutoff": f"{c:%Y-%m-%d}",
                            "rows": n.rows,
                            "positives": n.positives,
                        }
                        for c, n in s.counts.items()
                    ],
                    "dropped": s.dropped,
                }
                for s in skipped
            ]
        },
        "skipped_targets.json",
    )


def _purchases(ds: Dataset, spec: FeatureSpec) -> pd.DataFrame:
    """Purchase events (id, time, type) for the BG/NBD baseline."""
    types = [t for t, role in spec.role_of.items() if role == PURCHASE]
    events = ds.events
    return (
        events.filter(events[EVENT_TYPE].isin(types))
        .select(CUSTOMER_ID, EVENT_TIME, EVENT_TYPE)
        .to_pandas()
    )


def _train_target(
    config: ProjectConfig,
    table: TrainingTable,
    target_plan: Plan,
    purchases: pd.DataFrame | None,
    spec: FeatureSpec,
    client: MlflowClient,
    context: dict,
    customers: ir.Table | None = None,
) -> TargetResult:
    started = time.perf_counter()
    target = target_plan.target
    backtest = run(
        table,
        target_plan,
        config.training.lightgbm,
        config.training.backtest,
        purchases,
        dict(spec.role_of),
    )
    booster, encoding, rows = fit_final(
        table, target_plan, backtest, config.training.lightgbm
    )
    blend = final_blend(backtest, encoding, rows, target, config.training.backtest)
    name = config.model_name(target)
    champion = load_alias(client.tracking_uri, name, CHAMPION)
    predictions = _predictions(backtest)
    decision = decide(
        client,
        config.training.promotion,
        target,
        (backtest.evidence(), label_params(config, target), predictions),
        (champion.evidence, champion.version, champion.run_id) if champion else None,
    )
    built = table.catalogue
    unbuilt = champion.unbuilt(built.names, built.version()) if champion else None
    if unbuilt and not decision.promote:
        # the gate compared on the same rows, but the kept champion cannot be
        # scored with this config: say so now, not at the nightly run
        decision = replace(
            decision,
            reason=f"{decision.reason}; WARNING: champion {unbuilt}, so "
            "`propensity score` refuses with this config until a version on this "
            "definition is promoted (`propensity promote`) or the config is restored",
        )
    baselines = {}
    for baseline in backtest.models:
        if baseline in (MODEL, CALIBRATED):
            continue
        baselines[baseline] = _log_baseline(target, baseline, backtest, context)

    with _sibling_run(target, MODEL, KIND_MODEL, context) as model_run:
        summary = _log_model_run(
            config, table, target_plan, backtest, booster, encoding, context, baselines
        )
        summary |= _log_selection(config, backtest)
        mlflow.log_params(
            {
                "population": spec.population_name(target),
                "population_rows": len(table.frame),
            }
        )
        log_predictions(predictions)
        _log_definition(config, table)
        report.log_all(
            target_plan, backtest, booster, encoding, rows, baselines, context, config
        )
        if config.fairness.segments:
            _log_fairness(config, table, backtest, customers)
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
        sample = rows.head(5)
        frame = pd.DataFrame(
            encoding.to_matrix(sample), columns=list(encoding.features)
        )
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, booster.predict(frame.to_numpy())),
            input_example=frame,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
            metadata={
                METADATA_KEY: {
                    **_metadata(
                        target_plan, encoding, table, backtest, summary, context
                    ),
                    "population": spec.population_name(target),
                    "population_text": spec.population_text(target),
                    "reference": _reference(
                        target_plan, booster, encoding, rows, backtest, blend
                    ),
                    **({"blend": blend.to_dict()} if blend is not None else {}),
                }
            },
        )
        version = str(info.registered_model_version)
        mlflow.set_tags(
            {
                "registered_model": name,
                "registered_version": version,
                "promotion.decision": str(decision.promote),
                "promotion.reason": decision.reason,
            }
        )
    record(client, config.mlflow.experiment, name, version, decision)
    log.info("%s v%s: %s", name, version, decision.reason)
    return TargetResult(
        target,
        name,
        version,
        model_run.info.run_id,
        summary,
        baselines,
        decision,
        [o.origin for o in backtest.origins],
        backtest.calibrator.method,
        tuple(target_plan.dropped_lines()),
    )


def _predictions(backtest: Backtest) -> pd.DataFrame:
    """The raw model's out-of-time predictions at every origin (what the per-origin
    log loss and AUC, and so the gate, are computed from)."""
    origins = backtest.origins
    return predictions_frame(
        [o.origin.strftime("%Y-%m-%d") for o in origins],
        [o.customers for o in origins],
        [o.y for o in origins],
        [o.predictions[MODEL] for o in origins],
    )


@contextmanager
def _sibling_run(
    target: str, model: str, kind: str, context: dict
) -> Iterator[mlflow.ActiveRun]:
    """A run nested in the training run, tagged so siblings find each other,
    with the target's training table as its dataset input."""
    with mlflow.start_run(
        run_name=f"{target}/{model}",
        nested=True,
        tags={
            "kind": kind,
            "target": target,
            "model": model,
            "training_id": context["training_id"],
        },
    ) as run:
        if target in context.get("datasets", {}):
            mlflow.log_input(context["datasets"][target], context=DATASET_CONTEXT)
        yield run


def _table_source(config: ProjectConfig, context: dict) -> DatasetSource:
    """Where a run's training table comes from: its snapshot file when one was
    written (training.snapshot_dir), else the data sources it was built from."""
    if "snapshot" in context:
        path = str(Path(context["snapshot"]).resolve())
        return get_dataset_source_from_json(json.dumps({"uri": path}), "local")
    data = config.data
    sources = {"events": "; ".join(str(s) for s in data.event_sources())}
    for name in ("customers", "subscriptions"):
        if getattr(data, name) is not None:
            sources[name] = str(getattr(data, name))
    return CodeDatasetSource(sources)


def _log_fairness(
    config: ProjectConfig,
    table: TrainingTable,
    backtest: Backtest,
    customers: ir.Table | None,
) -> None:
    """The fairness report of the calibrated out-of-time predictions on the last
    origin (each calibrated on the origins before it), into the active run."""
    last = backtest.origins[-1]
    rows = table.frame[table.frame[CUTOFF] == last.origin]
    if not np.array_equal(rows[CUSTOMER_ID].to_numpy(), last.customers):
        raise RuntimeError("the last origin's rows are not the backtest's rows")
    attributes = [f.name for f in table.catalogue.features if f.source == f.name]
    values = fairness.segment_values(
        last.customers, rows[attributes], customers, config.fairness.segments
    )
    result = fairness.assess(
        last.predictions[CALIBRATED], last.y, values, config.fairness
    )
    report.log_fairness(result, backtest.target, last.origin.strftime("%Y-%m-%d"))


def _origin_metrics(backtest: Backtest, model: str, prefix: str) -> list[Metric]:
    """Per-origin metrics as MLflow history: step k, timestamp = the origin date."""
    out = []
    for k, (origin, scores) in enumerate(
        zip(backtest.origins, backtest.metrics, strict=True)
    ):
        if model not in scores:
            continue
        stamp = int(origin.origin.replace(tzinfo=UTC).timestamp() * 1000)
        out += [
            Metric(f"{prefix}{key}", value, stamp, k)
            for key, value in scores[model].items()
            if np.isfinite(value)
        ]
    return out


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if np.isfinite(v)}


def _log_baseline(
    target: str, baseline: str, backtest: Backtest, context: dict
) -> dict[str, float]:
    with _sibling_run(target, baseline, KIND_BASELINE, context) as baseline_run:
        summary = backtest.summary(baseline)
        mlflow.log_params({"target": target, "baseline": baseline})
        MlflowClient().log_batch(
            baseline_run.info.run_id,
            metrics=_origin_metrics(backtest, baseline, "backtest_"),
        )
        mlflow.log_metrics(_finite({f"backtest_{k}": v for k, v in summary.items()}))
    return summary


def _log_model_run(
    config: ProjectConfig,
    table: TrainingTable,
    target_plan: Plan,
    backtest: Backtest,
    booster: lightgbm.Booster,
    encoding: Encoding,
    context: dict,
    baselines: dict[str, dict[str, float]],
) -> dict[str, float]:
    """Params and metrics of the model run; returns the backtest summary."""
    fingerprint = context["fingerprint"]
    days = [o.origin.strftime("%Y-%m-%d") for o in backtest.origins]
    mlflow.log_params(
        {
            "target": target_plan.target,
            "horizon_days": target_plan.horizon_days,
            **label_params(config, target_plan.target),
            "origins": ",".join(days),
            "final_cutoffs": ",".join(
                c.strftime("%Y-%m-%d") for c in target_plan.final_cutoffs
            ),
            "n_final_rows": int(
                table.frame["cutoff"].isin(target_plan.final_cutoffs).sum()
            ),
            "final_rounds": booster.current_iteration(),
            "calibration": backtest.calibrator.method,
            "n_features": len(encoding.features),
            "features": ",".join(encoding.features),
            "feature_set_version": table.catalogue.version(),
            **{f"data_{k}": v for k, v in fingerprint.items()},
            **{f"lgb_{k}": v for k, v in lgb_params(config.training.lightgbm).items()},
        }
    )
    run_id = mlflow.active_run().info.run_id
    MlflowClient().log_batch(
        run_id,
        metrics=_origin_metrics(backtest, MODEL, "backtest_")
        + _origin_metrics(backtest, CALIBRATED, "calibrated_"),
    )
    summary = backtest.summary(MODEL)
    calibrated = backtest.summary(CALIBRATED, skip_first=True)
    before = backtest.summary(MODEL, skip_first=True)
    out = {f"backtest_{k}": v for k, v in summary.items()}
    out |= {f"calibrated_{k}": v for k, v in calibrated.items() if k.endswith("_mean")}
    out |= {f"uncalibrated_{k}": v for k, v in before.items() if k.endswith("_mean")}
    for baseline, values in baselines.items():
        out |= {f"{baseline}_{k}": v for k, v in values.items() if k.endswith("_mean")}
    for method, loss in backtest.calibration.log_loss.items():
        out[f"calibration_{method}_last_origin_log_loss"] = loss
    mlflow.log_metrics(_finite(out))
    mlflow.log_dict({"origins": backtest.rows()}, "backtest.json")
    return out


def _log_common(config: ProjectConfig, table: TrainingTable, context: dict) -> None:
    mlflow.log_params(
        {
            "cutoffs": ",".join(c.strftime("%Y-%m-%d") for c in table.cutoffs),
            "feature_set_version": table.catalogue.version(),
            "n_rows": len(table.frame),
            **{f"data_{k}": v for k, v in context["fingerprint"].items()},
        }
    )
    if "snapshot" in context:
        mlflow.set_tag("training.snapshot", context["snapshot"])
    _log_definition(config, table)


def _log_definition(config: ProjectConfig, table: TrainingTable) -> None:
    """The config and the feature catalogue, as artifacts of the active run."""
    mlflow.log_dict(config.model_dump(mode="json"), "config.json")
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


def _log_selection(config: ProjectConfig, backtest: Backtest) -> dict[str, float]:
    """The model card's choice: what is served, why, the figures that chose it
    (mean AUC and log loss over the origins per candidate), and the served
    model's margin over the best baseline with its paired bootstrap interval;
    returns the margin's figures."""
    selection = backtest.selection
    if selection is None:
        return {}
    promotion = config.training.promotion
    margin = backtest.margin(promotion.bootstrap_samples, promotion.confidence)
    mlflow.log_params(
        {
            **selection.params(),
            **({"margin_baseline": margin["margin_baseline"]} if margin else {}),
        }
    )
    numbers = {k: float(v) for k, v in margin.items() if not isinstance(v, str)}
    mlflow.log_metrics(_finite(selection.metrics() | numbers))
    mlflow.log_dict(
        {
            "chosen": selection.chosen,
            "trees": selection.trees,
            "reason": selection.reason,
            "origins": [o.origin.strftime("%Y-%m-%d") for o in backtest.origins],
            "figures": selection.figures,
            "blend_coef": selection.stacker.coef if selection.stacker else None,
            "margin": margin,
        },
        "selection.json",
    )
    log.info(
        "%s: serving %s; margin over %s: AUC %s",
        backtest.target,
        selection.chosen,
        margin.get("margin_baseline"),
        margin.get("margin_roc_auc"),
    )
    return numbers


def _reference(
    target_plan: Plan,
    booster: lightgbm.Booster,
    encoding: Encoding,
    rows: pd.DataFrame,
    backtest: Backtest,
    blend: Blend | None = None,
) -> dict:
    """The binned reference for drift monitoring (model.drift): the rows of the
    latest cutoff the final model was trained on, their features and the served
    (calibrated) scores of the final model on them."""
    latest = target_plan.final_cutoffs[-1]
    matrix = encoding.to_matrix(rows[rows[CUTOFF] == latest])
    return drift.profile(
        matrix,
        encoding.features,
        encoding.vocabularies,
        backtest.calibrator.apply(served_raw(booster, blend, matrix)),
        cutoff=latest.strftime("%Y-%m-%d"),
    )


def _metadata(
    target_plan: Plan,
    encoding: Encoding,
    table: TrainingTable,
    backtest: Backtest,
    summary: dict[str, float],
    context: dict,
) -> dict:
    return {
        "target": target_plan.target,
        "horizon_days": target_plan.horizon_days,
        "encoding": encoding.to_dict(),
        "calibration": backtest.calibrator.to_dict(),
        "backtest": backtest.evidence(),
        "metrics": {k: v for k, v in summary.items() if np.isfinite(v)},
        "feature_set_version": table.catalogue.version(),
        "final_cutoffs": [c.strftime("%Y-%m-%d") for c in target_plan.final_cutoffs],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_id": context["training_id"],
    }
