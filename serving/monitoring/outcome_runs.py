"""Outcome monitoring over every newly matured score date: the MLflow time series,
the alert, the reports and the status file.

`check` walks the score dates (serving.monitoring.outcomes), evaluates each
(date, target) whose label window has passed and that the MLflow experiment
`<mlflow.experiment>.outcomes` does not hold yet (a finished run tagged
`kind=outcome`, `as_of`, `target` and `score_run_id`, the scoring run that wrote
the file: a second check logs nothing new; a date scored again holds other scores
and is evaluated again), and per pair:

- puts the champion's backtest expectation beside the realised figures: the
  metrics of the model version's training run (`backtest_roc_auc_mean`,
  `calibrated_log_loss_mean` else `backtest_log_loss_mean`, `calibrated_ece_mean`,
  `backtest_lift_top_decile_mean`, `backtest_positive_rate_mean`);
- alerts when the realised AUC is below the backtest mean by more than
  `scoring.outcomes.auc_tolerance`, or the realised ECE is above
  `scoring.outcomes.max_ece`;
- writes `<scoring.output>/_outcomes/as_of=DATE/<target>.json` and
  `<target>_reliability.svg`, and one MLflow run (metrics stamped at the score
  date, so the experiment's charts are the time series; the JSON and the plot
  as artifacts).

The check's status goes to `<scoring.output>/_outcomes/_last_check.json`: what was
evaluated, what waits for its horizon (and how many days), the alerts and the
exit code (OUTCOME_ALERT when a newly evaluated pair alerts, else OK).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from core.atomic import atomic_write
from core.config import ProjectConfig
from core.exitcodes import ExitCode
from features.columns import AS_OF
from features.labels import LabelSpec
from features.sources.load import Dataset
from serving.monitoring.outcomes import (
    evaluate,
    maturity,
    outcome_end,
    score_dates,
    scoring_run,
    targets_in,
)

log = logging.getLogger(__name__)

KIND = "outcome"
SCORE_RUN = "score_run_id"
OUTCOMES_DIR = "_outcomes"
STATUS_FILE = "_last_check.json"
OK, ALERT, ERROR = "ok", "alert", "error"
FIGURES = ("roc_auc", "log_loss", "ece", "lift_top_decile", "positive_rate")
# logged beside them, with no expectation
OTHERS = ("ece_noise_floor", "mean_score")
# where each expectation comes from in the model version's training run, in order
EXPECTED = {
    "roc_auc": ("backtest_roc_auc_mean",),
    "log_loss": ("calibrated_log_loss_mean", "backtest_log_loss_mean"),
    "ece": ("calibrated_ece_mean", "backtest_ece_mean"),
    "lift_top_decile": ("backtest_lift_top_decile_mean",),
    "positive_rate": ("backtest_positive_rate_mean",),
}


def outcomes_experiment(config: ProjectConfig) -> str:
    return f"{config.mlflow.experiment}.outcomes"


def outcomes_dir(config: ProjectConfig) -> Path:
    return Path(config.scoring.output) / OUTCOMES_DIR


def expectation(client, name: str | None, version: str | None) -> dict:  # noqa: ANN001
    """The backtest figures of a registered version's training run; `note` says
    why there are none (unknown version, run gone)."""
    if not name or not version:
        return {"note": "the score file names no model version"}
    try:
        mv = client.get_model_version(name, version)
        metrics = client.get_run(mv.run_id).data.metrics
    except Exception as exc:  # MlflowException: deleted version or run
        return {"note": f"no training run for {name} v{version}: {exc}"[:500]}
    out: dict = {"run_id": mv.run_id}
    for figure, keys in EXPECTED.items():
        out[figure] = next((metrics[k] for k in keys if k in metrics), None)
    return out


def judge(figures: dict, expected: dict, config: ProjectConfig) -> list[str]:
    """The alerts of one (date, target): AUC past the tolerance, ECE too high."""
    bar = config.scoring.outcomes
    alerts = []
    auc, hoped = figures.get("roc_auc"), expected.get("roc_auc")
    if auc is not None and hoped is not None and auc < hoped - bar.auc_tolerance:
        alerts.append(
            f"roc_auc {auc:.4f} below the backtest's {hoped:.4f} by more than "
            f"{bar.auc_tolerance:g}"
        )
    ece = figures.get("ece")
    if ece is not None and figures.get("n") and ece > bar.max_ece:
        floor = figures.get("ece_noise_floor")
        alerts.append(
            f"ece {ece:.4f} above {bar.max_ece:g}"
            + (f" (noise floor at this n: {floor:.4f})" if floor is not None else "")
        )
    return alerts


def logged(client, experiment_id: str) -> set[tuple[str, str, str]]:  # noqa: ANN001
    """(as_of, target, score run id) of every finished outcome run."""
    done: set[tuple[str, str, str]] = set()
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.kind = '{KIND}' and attributes.status = 'FINISHED'",
            max_results=10_000,
            page_token=token,
        )
        done |= {
            (
                r.data.tags.get(AS_OF, ""),
                r.data.tags.get("target", ""),
                r.data.tags.get(SCORE_RUN, ""),
            )
            for r in page
        }
        token = page.token
        if not token:
            return done


def check(
    config: ProjectConfig,
    ds: Dataset,
    tracking_uri: str,
    *,
    since: datetime | None = None,
) -> dict:
    """Evaluate and log every newly matured (score date, target); the status
    (also written to `_outcomes/_last_check.json`)."""
    from mlflow.tracking import MlflowClient

    from model.registry import configure

    started = time.perf_counter()
    end = outcome_end(config, ds)
    labels = LabelSpec.from_config(config)
    experiment_id = configure(tracking_uri, outcomes_experiment(config))
    client = MlflowClient(tracking_uri, tracking_uri)
    done = logged(client, experiment_id)
    evaluated, waiting, problems, already = [], [], [], 0
    for date in score_dates(config.scoring.output, since):
        # the file's targets the config still lists (their label definitions)
        present = [t for t in targets_in(date.path) if t in labels.horizons]
        mature, wait = maturity(labels, present, date.as_of, end)
        waiting += [
            {AS_OF: date.day, "target": t, "days_remaining": d} for t, d in wait.items()
        ]
        scored_by = scoring_run(date.path) if mature else ""
        new = [t for t in mature if (date.day, t, scored_by) not in done]
        already += len(mature) - len(new)
        if not new:
            continue
        report = evaluate(config, ds, date, new)
        if "ids_mismatch" in report:
            problems.append(f"{date.day}: {report['ids_mismatch']}")
            continue
        for target, figures in report["targets"].items():
            item = _item(config, client, report, target, figures)
            item[SCORE_RUN] = report[SCORE_RUN]
            item["run_id"] = _record(client, experiment_id, item)
            _write(config, item)
            evaluated.append(item)
    alerts = [f"{i[AS_OF]} {i['target']}: {a}" for i in evaluated for a in i["alerts"]]
    status = {
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_end": end.isoformat(),
        "since": since.isoformat() if since else None,
        "experiment": outcomes_experiment(config),
        "thresholds": config.scoring.outcomes.model_dump(),
        "level": ALERT if alerts else OK,
        "alerts": alerts,
        "evaluated": [_brief(i) for i in evaluated],
        "already_logged": already,
        "waiting": waiting,
        "problems": problems,
        "exit_code": int(ExitCode.OUTCOME_ALERT if alerts else ExitCode.OK),
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_status(config, status)
    return status


def nightly_check(config: ProjectConfig, ds, tracking_uri: str) -> dict:  # noqa: ANN001
    """`check` for the nightly run, which must not fail for it: the scores are
    published. On the Spark engine the DuckDB views of the same files are used.
    An error comes back as level `error` with the message (and is logged)."""
    try:
        if not isinstance(ds, Dataset):
            from features.sources.load import connect, load_project

            ds = load_project(
                config, con=connect(config.engine.memory_limit, config.engine.threads)
            )
        return check(config, ds, tracking_uri)
    except Exception as exc:
        log.exception("outcome monitoring failed")
        return {"level": ERROR, "alerts": [], "error": f"{type(exc).__name__}: {exc}"}


def nightly_tags(status: dict | None) -> dict[str, str]:
    """The nightly MLflow run's tags for the check's `status`."""
    if status is None:
        return {}
    return {
        "outcomes.level": status["level"],
        "outcomes.alerts": "; ".join(status["alerts"])[:4000],
        "outcomes.evaluated": str(len(status.get("evaluated", []))),
    }


def nightly_summary(status: dict | None) -> dict:
    """The nightly status file's outcome fields for the check's `status`."""
    if status is None:
        return {}
    return {
        "outcome_level": status["level"],
        "outcome_alerts": status["alerts"],
        "outcomes_evaluated": len(status.get("evaluated", [])),
        "outcomes_error": status.get("error"),
    }


def _item(
    config: ProjectConfig,
    client,
    report: dict,
    target: str,
    figures: dict,  # noqa: ANN001
) -> dict:
    expected = expectation(client, figures["model"], figures["model_version"])
    notes = list(report.get("notes", []))
    if figures["n"] == 0:
        notes.append("no customer left to evaluate")
    elif figures.get("roc_auc") is None:
        notes.append("a single class among the outcomes: no AUC")
    if expected.get("note"):
        notes.append(expected["note"])
    elif expected.get("roc_auc") is None:
        notes.append("the training run has no backtest AUC: AUC not checked")
    left = figures["left_out"]
    if left["treatment"]:
        notes.append(
            f"{left['treatment']:,} customer(s) in a campaign's treatment group "
            "confirmed in the window: left out (their outcome was changed on purpose)"
        )
    alerts = judge(figures, expected, config)
    return {
        AS_OF: report[AS_OF],
        "target": target,
        **figures,
        "expected": expected,
        "ece_bins": "equal-count (the backtest's ECE: equal-width)",
        "level": ALERT if alerts else OK,
        "alerts": alerts,
        "notes": notes,
    }


def _brief(item: dict) -> dict:
    keys = (AS_OF, "target", "model_version", "n", "positives", *FIGURES, *OTHERS)
    return {
        **{k: item.get(k) for k in keys},
        "expected_roc_auc": item["expected"].get("roc_auc"),
        "left_out": item["left_out"],
        "level": item["level"],
        "alerts": item["alerts"],
        "run_id": item.get("run_id"),
        SCORE_RUN: item.get(SCORE_RUN),
    }


def metrics(item: dict) -> dict[str, float]:
    """The run's metrics: realised figures, counts and the expectations."""
    out = {k: item[k] for k in ("n", "positives", "scored") if k in item}
    out |= {k: item[k] for k in FIGURES + OTHERS if item.get(k) is not None}
    out["left_out_treatment"] = item["left_out"]["treatment"]
    out["left_out_unknown_id"] = item["left_out"]["unknown_id"]
    for k in FIGURES:
        if item["expected"].get(k) is not None:
            out[f"expected_{k}"] = item["expected"][k]
    if "roc_auc" in out and "expected_roc_auc" in out:
        out["roc_auc_gap"] = out["roc_auc"] - out["expected_roc_auc"]
    out["alert"] = float(bool(item["alerts"]))
    return {k: float(v) for k, v in out.items()}


def _record(client, experiment_id: str, item: dict) -> str:  # noqa: ANN001
    """One MLflow run for the (date, target); its id."""
    from model.registry import log_record_run

    day = item[AS_OF]
    stamp = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    return log_record_run(
        client,
        experiment_id,
        run_name=f"outcome-{item['target']}-{day}",
        tags={
            "kind": KIND,
            AS_OF: day,
            "target": item["target"],
            SCORE_RUN: item[SCORE_RUN],
            "level": item["level"],
        },
        params={
            AS_OF: day,
            "target": item["target"],
            "model": item["model"],
            "model_version": item["model_version"],
            "model_run_id": item["expected"].get("run_id", ""),
            "horizon_days": item["horizon_days"],
            "window_end": item["window"]["end"],
        },
        metrics=metrics(item),
        stamp_ms=int(stamp * 1000),
        notes={"alerts": item["alerts"], "notes": item["notes"]},
        files={
            "outcomes.json": json.dumps(item, indent=2) + "\n",
            "reliability.svg": reliability_svg(item),
        },
    )


def _write(config: ProjectConfig, item: dict) -> None:
    folder = outcomes_dir(config) / f"{AS_OF}={item[AS_OF]}"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(item, indent=2) + "\n"
    svg = reliability_svg(item)
    atomic_write(folder / f"{item['target']}.json", lambda tmp: tmp.write_text(text))
    atomic_write(
        folder / f"{item['target']}_reliability.svg", lambda tmp: tmp.write_text(svg)
    )


def write_status(config: ProjectConfig, status: dict) -> None:
    path = outcomes_dir(config) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(status, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_status(config: ProjectConfig) -> dict | None:
    path = outcomes_dir(config) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def reliability_svg(item: dict, size: int = 320, pad: int = 40) -> str:
    """The reliability curve: observed rate against mean score per equal-count
    bin, beside the diagonal; axes from 0 to the largest value shown."""
    curve = item.get("reliability") or []
    top = max([0.05] + [max(b["mean_predicted"], b["observed"]) for b in curve])
    top = min(1.0, top * 1.1)
    span = size - 2 * pad

    def x(v: float) -> float:
        return pad + span * v / top

    def y(v: float) -> float:
        return size - pad - span * v / top

    points = " ".join(
        f"{x(b['mean_predicted']):.1f},{y(b['observed']):.1f}" for b in curve
    )
    dots = "".join(
        f"<circle cx='{x(b['mean_predicted']):.1f}' cy='{y(b['observed']):.1f}' "
        f"r='3' fill='#1f77b4'><title>bin {b['bin']}: n {b['n']}, score "
        f"{b['mean_predicted']:.4f}, observed {b['observed']:.4f}</title></circle>"
        for b in curve
    )
    ece = item.get("ece")
    title = f"{item.get('target')} as of {item.get(AS_OF)}" + (
        f": ECE {ece:.4f}" if ece is not None else ""
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' "
        "font-family='sans-serif' font-size='11'>"
        f"<text x='{pad}' y='16'>{title}</text>"
        f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(top)}' y2='{y(top)}' "
        "stroke='#999' stroke-dasharray='4 3'/>"
        f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(top)}' y2='{y(0)}' stroke='#333'/>"
        f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(0)}' y2='{y(top)}' stroke='#333'/>"
        f"<text x='{x(top) - 4}' y='{y(0) + 14}' text-anchor='end'>{top:.2f}</text>"
        f"<text x='{x(0)}' y='{y(0) + 14}'>0</text>"
        f"<text x='{size / 2}' y='{size - 8}' text-anchor='middle'>mean score "
        "(equal-count bins)</text>"
        f"<text x='12' y='{size / 2}' transform='rotate(-90 12 {size / 2})' "
        "text-anchor='middle'>observed rate</text>"
        f"<polyline points='{points}' fill='none' stroke='#1f77b4'/>{dots}</svg>\n"
    )


def _f(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def text(status: dict) -> str:
    """The status for a person: each evaluated (date, target), then what waits."""
    lines = [f"outcomes: the data end at {status['data_end'][:16]} (exclusive)"]
    if not status["evaluated"]:
        lines.append("no newly matured score date")
    for i in status["evaluated"]:
        left = i["left_out"]
        lines.append(
            f"{i[AS_OF]} {i['target']:16} v{i['model_version']}: n {i['n']:,} "
            f"positives {i['positives']:,}  AUC {_f(i['roc_auc'])} (backtest "
            f"{_f(i['expected_roc_auc'])})  log loss {_f(i['log_loss'])}  "
            f"ECE {_f(i['ece'])} (noise {_f(i.get('ece_noise_floor'))})  "
            f"top-decile lift {_f(i['lift_top_decile'], 2)}  "
            f"left out: {left['treatment']:,} treatment, {left['unknown_id']:,} "
            f"unknown id  [{i['level']}]"
        )
    if status["already_logged"]:
        lines.append(
            f"{status['already_logged']} matured (date, target) already logged"
        )
    for w in status["waiting"]:
        lines.append(
            f"{w[AS_OF]} {w['target']}: immature, {w['days_remaining']} day(s) "
            "until its horizon has passed"
        )
    lines += [f"problem: {p}" for p in status["problems"]]
    lines += [f"ALERT {a}" for a in status["alerts"]]
    return "\n".join(lines) + "\n"
