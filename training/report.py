"""What an ML engineer looks at: plots and a model card, logged with each model run.

Plots (under `plots/`): ROC and PR curves with the baselines, the reliability
diagram before and after calibration, cumulative gains and lift by decile (all on
the last origin, out of time), gain importance and a contribution (SHAP) summary of
the final model on a sample of the last origin, and every metric per origin over
time. The model card (`model_card.md`) states the data window, cutoffs, the
eligibility rule, metrics, baselines and caveats.
"""

from __future__ import annotations

import logging

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd

from core.config import ProjectConfig
from features.definition import FeatureSpec
from model.encoding import Encoding
from training import plots
from training.backtest import CALIBRATED, MODEL, Backtest, Plan
from training.fairness import FLAG_CALIBRATION, FLAG_FOUR_FIFTHS, FairnessReport

log = logging.getLogger(__name__)

SHAP_SAMPLE = 2_000
CARD_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top_decile",
    "capture_top_decile",
)


def log_all(
    target_plan: Plan,
    backtest: Backtest,
    booster: lgb.Booster,
    encoding: Encoding,
    rows: pd.DataFrame,
    baselines: dict[str, dict[str, float]],
    context: dict,
    config: ProjectConfig,
) -> None:
    """Log every plot and the model card to the active run."""
    last = backtest.origins[-1]
    served = last.predictions.get(CALIBRATED, last.predictions[MODEL])
    others = {k: v for k, v in last.predictions.items() if k not in (MODEL, CALIBRATED)}
    figures = {
        "roc_pr": plots.roc_pr(last.y, last.predictions[MODEL], others),
        "reliability": plots.reliability(
            last.y, last.predictions[MODEL], last.predictions.get(CALIBRATED)
        ),
        "gains_lift": plots.gains_lift(last.y, served),
        "importance_gain": plots.importance(
            list(encoding.features), booster.feature_importance("gain")
        ),
        "origins_roc_auc": plots.origins_over_time(backtest.rows(), "roc_auc"),
        "origins_log_loss": plots.origins_over_time(backtest.rows(), "log_loss"),
    }
    sample = rows.sample(min(SHAP_SAMPLE, len(rows)), random_state=0)
    x = encoding.to_matrix(sample)
    contrib = booster.predict(x, pred_contrib=True)[:, :-1]
    figures["contributions"] = plots.contribution_summary(
        list(encoding.features), contrib, x
    )
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")
    mlflow.log_text(
        model_card(target_plan, backtest, baselines, context, config, len(rows)),
        "model_card.md",
    )


FAIRNESS_TABLE = "fairness/segments.json"
FAIRNESS_PLOT = "fairness/segments.png"
FAIRNESS_SUMMARY = "fairness/summary.json"
FAIRNESS_TAG = "fairness.flagged"
# MLflow caps a tag value at 8,000 characters
TAG_LIMIT = 4_000


def log_fairness(report: FairnessReport, target: str, origin: str) -> None:
    """The fairness report into the active run: the segment table, its figure, a
    summary, counts of flags as metrics and the flagged segments as a tag; a
    warning names flagged segments (never customers)."""
    mlflow.log_table(pd.DataFrame(report.segments), FAIRNESS_TABLE)
    mlflow.log_figure(plots.fairness(report.segments, report.curves), FAIRNESS_PLOT)
    flagged = report.flagged
    mlflow.log_dict(
        {
            "target": target,
            "origin": origin,
            "threshold": report.threshold,
            "threshold_source": report.threshold_source,
            "overall": report.overall,
            "flagged": flagged,
        },
        FAIRNESS_SUMMARY,
    )
    mlflow.log_metrics(
        {
            "fairness_flags": len(flagged),
            "fairness_four_fifths_flags": report.count(FLAG_FOUR_FIFTHS),
            "fairness_calibration_flags": report.count(FLAG_CALIBRATION),
            "fairness_threshold": report.threshold,
            "fairness_overall_ece": report.overall["ece"],
            "fairness_selection_rate": report.overall["selection_rate"],
        }
    )
    text = "; ".join(flagged) or "none"
    mlflow.set_tag(FAIRNESS_TAG, text[:TAG_LIMIT])
    if flagged:
        log.warning(
            "%s fairness report (origin %s, threshold %.4f): flagged %s",
            target,
            origin,
            report.threshold,
            text,
        )
    else:
        log.info("%s fairness report (origin %s): no segment flagged", target, origin)


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _selection_lines(backtest: Backtest) -> list[str]:
    """What the backtest chose to serve (training/select.py) and the figures that
    chose it: mean AUC and log loss over the origins per candidate."""
    s = backtest.selection
    if s is None:
        return []
    lines = [
        "",
        "## What is served, and why (chosen on the backtest origins)",
        "",
        f"Served: **{s.chosen}** (trees: {s.trees}"
        + (
            f"; blend weights on the trees' and the logistic regression's logits "
            f"{s.stacker.coef[0]:.3f}, {s.stacker.coef[1]:.3f}"
            if s.stacker is not None
            else ""
        )
        + f"): {s.reason}.",
        "",
        "| candidate or baseline | mean AUC | mean log loss |",
        "|---|---|---|",
    ]
    for name, f in s.figures.items():
        lines.append(f"| {name} | {_fmt(f['auc'])} | {_fmt(f['logloss'])} |")
    return lines


def model_card(
    target_plan: Plan,
    backtest: Backtest,
    baselines: dict[str, dict[str, float]],
    context: dict,
    config: ProjectConfig,
    final_rows: int,
) -> str:
    """A short markdown card: what the model is for, on what data, how good."""
    target = target_plan.target
    origins = [o.origin.strftime("%Y-%m-%d") for o in backtest.origins]
    fp = context["fingerprint"]
    summary = backtest.summary(MODEL)
    calibrated = backtest.summary(CALIBRATED, skip_first=True)
    before = backtest.summary(MODEL, skip_first=True)
    cutoffs = target_plan.final_cutoffs
    spec = FeatureSpec.from_config(config)
    lines = [
        f"# Model card: {config.model_name(target)} ({target})",
        "",
        f"Training run `{context['training_id']}`. LightGBM binary classifier, "
        f"calibrated with **{backtest.calibrator.method}** "
        f"(log loss on the last origin: "
        + ", ".join(f"{k} {v:.5f}" for k, v in backtest.calibration.log_loss.items())
        + ").",
        "",
        "## Target",
        f"{_target_text(target, config)} within **{target_plan.horizon_days} days** "
        "after the cutoff (events from the cutoff's midnight on).",
        "",
        "## Data",
        f"- Events: {fp.get('rows', 'n/a')} rows, data fingerprint "
        f"`{fp.get('hash', 'n/a')}`.",
        f"- Final model: {len(cutoffs)} cutoffs {cutoffs[0]:%Y-%m-%d} .. "
        f"{cutoffs[-1]:%Y-%m-%d} (every cutoff whose label window is complete), "
        f"{final_rows} rows.",
        f"- Population `{spec.population_name(target)}`: the model is trained, "
        f"tested and scored on {spec.population_text(target)}.",
        f"- Backtest origins: {', '.join(origins)}; each origin is scored by models "
        "fitted only on cutoffs whose label windows end by it.",
        "",
        "## Backtest (mean ± std over origins, out of time)",
        "",
        "| metric | lightgbm | " + " | ".join(baselines) + " |",
        "|---|---|" + "---|" * len(baselines),
    ]
    for key in CARD_METRICS:
        cells = [f"{_fmt(summary[key + '_mean'])} ± {_fmt(summary[key + '_std'])}"]
        cells += [_fmt(b.get(key + "_mean")) for b in baselines.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += _selection_lines(backtest)
    lines += [
        "",
        "## Calibration (origins 2..n, each calibrated on the origins before it)",
        "",
        "| metric | raw | calibrated |",
        "|---|---|---|",
    ]
    for key in ("log_loss", "brier", "ece"):
        lines.append(
            f"| {key} | {_fmt(before.get(key + '_mean'))} | "
            f"{_fmt(calibrated.get(key + '_mean'))} |"
        )
    lines += [
        "",
        "## Caveats",
        "- Probabilities are calibrated on past origins; a shift in the customer "
        "base or in marketing activity changes what they mean; retrain and "
        "compare runs when it does.",
        "- The backtest's models are fitted on fewer cutoffs than the final model; "
        "the final model's quality is estimated, not measured.",
        "- Customers with no event before a cutoff are not scored; nor are those "
        "outside the population above.",
        "- Reasons (feature contributions) describe the model, not causes.",
    ]
    if "bgnbd" in baselines:
        lines.append(
            "- BG/NBD gives no prediction for customers without a purchase; they get "
            "the training rate of never-purchased customers."
        )
    return "\n".join(lines) + "\n"


def _target_text(target: str, config: ProjectConfig) -> str:
    if target == "churn":
        return (
            f"Churn ({config.targets.churn_settings.definition}): the customer "
            "cancels or has "
            "no activity"
        )
    if target == "purchase":
        return "Purchase: at least one purchase event"
    return "Service request: at least one service-request event"
